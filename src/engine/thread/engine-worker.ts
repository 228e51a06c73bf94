// The engine thread: builds the executor and the Engine from workerData (EngineThreadData) and runs them,
// taking generate / abort / shutdown messages from the HTTP thread's ThreadEngine. Every delta the engine
// hands its sinks during one turn of this thread's event loop goes back in one "outputs" message, with the
// engine's stats, so the HTTP thread's per-step work is one message however many requests run.
// Invariants: outputs are posted in the order the engine produced them; a request refused at submission is
// answered in "rejected" (never with outputs); everything produced before a death is posted before "death".

import type { MessagePort } from "node:worker_threads";
import { createExecutor } from "../../registry/executor-spec.ts";
import { startGcLog } from "../../server/gc-log.ts";
import { startLoopLog } from "../../server/loop-log.ts";
import { HfTokenizer } from "../../tokenizer/tokenizer.ts";
import { createLlmEngine, type Engine } from "../engine.ts";
import type { RequestOutput } from "../protocol.ts";
import { serializeError } from "./errors.ts";
import type { EngineThreadData, FromEngineThread, SerializedError, ToEngineThread } from "./messages.ts";

/** Steps' deltas that may wait behind an untaken batch before the engine holds its next step. */
const MAX_WAITING_TURNS = 2;

export async function runEngineThread(port: MessagePort, data: EngineThreadData): Promise<void> {
  const post = (m: FromEngineThread) => port.postMessage(m);
  // Diagnostic (docs/gpu-executor.md): this thread's event loop load, beside the HTTP thread's.
  if (process.env.LMI_LOOP_LOG) startLoopLog(`${process.env.LMI_LOOP_LOG}.engine`);
  if (process.env.LMI_GC_LOG) startGcLog(`${process.env.LMI_GC_LOG}.engine`); // this thread's own heap
  const logger = {
    warn: (message: string) => post({ type: "log", level: "warn", message }),
    info: (message: string) => post({ type: "log", level: "info", message }),
  };
  let engine: Engine;
  try {
    const executor = await createExecutor(data.executor);
    engine = await createLlmEngine({
      executor,
      modelDir: data.modelDir,
      options: { ...data.options, logger },
      tokenizer: HfTokenizer.fromDir(data.modelDir),
    });
  } catch (err) {
    post({ type: "loadFailed", error: serializeError(err) });
    port.close();
    return;
  }

  let outputs: RequestOutput[] = [];
  let rejected: Array<{ requestId: string; error: SerializedError }> = [];
  let flushQueued = false;
  // An "outputs" message the HTTP thread has not answered yet: what comes meanwhile waits and goes in one.
  let unanswered = false;
  let dirty = false;
  // Turns of this thread's loop whose deltas wait for the next message (one per step, about).
  let waitingTurns = 0;
  let inTurn = false;
  const flush = () => {
    flushQueued = false;
    dirty = false;
    waitingTurns = 0;
    const m: FromEngineThread = { type: "outputs", outputs, rejected, stats: engine.stats() };
    outputs = [];
    rejected = [];
    unanswered = true;
    post(m);
  };
  const queueFlush = () => {
    dirty = true;
    if (flushQueued || unanswered) return;
    flushQueued = true;
    setImmediate(flush);
  };
  const sink = (out: RequestOutput) => {
    outputs.push(out);
    if (!inTurn) {
      inTurn = true;
      waitingTurns++;
      queueMicrotask(() => {
        inTurn = false;
      });
    }
    queueFlush();
  };
  // The loop launches no new step while the HTTP thread has the last batch and two steps' deltas wait behind
  // it (holding at one let every small delay of the HTTP thread stall the GPU: a 1B burst ran 15% slower).
  let gateWaiters: Array<() => void> = [];
  engine.setDeliveryGate({
    open: () => !(unanswered && waitingTurns >= MAX_WAITING_TURNS),
    wait: () => new Promise<void>((resolve) => gateWaiters.push(resolve)),
  });
  engine.onDeath((reason) => {
    // The engine has just ended every request with an error delta: those go first (answered or not).
    flush();
    post({ type: "death", reason });
  });

  port.on("message", (m: ToEngineThread) => {
    switch (m.type) {
      case "generate":
        try {
          engine.start(m.request, sink);
        } catch (err) {
          rejected.push({ requestId: m.request.requestId, error: serializeError(err) });
        }
        queueFlush(); // the new stats (a waiting request) go back even before a step runs
        return;
      case "abort":
        engine.abort(m.requestId);
        return;
      case "outputsTaken": {
        unanswered = false;
        if (dirty) queueFlush();
        const waiters = gateWaiters;
        gateWaiters = [];
        for (const w of waiters) w();
        return;
      }
      case "shutdown":
        void engine.shutdown().finally(() => {
          if (dirty) flush();
          post({ type: "closed" });
          port.close();
        });
        return;
    }
  });
  post({ type: "ready", modelInfo: engine.modelInfo, stats: engine.stats() });
}
