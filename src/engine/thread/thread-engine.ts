// ThreadEngine: the LlmEngine the HTTP thread sees when the engine runs on a thread of its own
// (option.engine_thread). The step loop, the scheduler, the executor's I/O and detokenization run on the
// engine thread (engine-worker.ts); this side keeps what requests need before they reach the engine
// (tokenizer, chat template, parameter validation) and what they need after (per-request queues the HTTP
// writers drain), so formatting and socket writes for a step overlap the engine's next step instead of
// delaying it. Invariants: each request's deltas arrive in order and end with one finished delta; a request
// the engine refused rejects its stream's first iteration with the same ServerError class; if the thread
// dies, every open stream ends with finishReason "error", new requests get EngineDeadError, and onDeath
// listeners run once. shutdown() is not a death.

import type { Worker } from "node:worker_threads";
import { EngineDeadError, ValidationError } from "../../errors.ts";
import type { ModelInfo } from "../../executor/types.ts";
import type { ExecutorSpec } from "../../registry/executor-spec.ts";
import { startServerThread } from "../../server-thread.ts";
import { HfTokenizer } from "../../tokenizer/tokenizer.ts";
import { AsyncQueue, deltasOf } from "../async-queue.ts";
import { EngineFront } from "../engine-front.ts";
import { type EngineOptions, resolveEngineOptions } from "../engine-options.ts";
import type { EngineStats, GenerateRequest, LlmEngine, RequestOutput } from "../protocol.ts";
import { reviveError } from "./errors.ts";
import type { EngineThreadData, FromEngineThread, ToEngineThread } from "./messages.ts";

export interface ThreadEngineArgs {
  modelDir: string;
  executor: ExecutorSpec;
  options?: EngineOptions;
  /** How long shutdown() waits for the thread to stop its executor before terminating it. */
  shutdownTimeoutMs?: number;
}

type Item = RequestOutput | Error;

const EMPTY_STATS: EngineStats = {
  numRunning: 0,
  numWaiting: 0,
  kvCacheUsage: 0,
  numPreemptions: 0,
  numPromptTokensTotal: 0,
  numGenerationTokensTotal: 0,
  prefixCacheHitRate: 0,
};

export class ThreadEngine extends EngineFront implements LlmEngine {
  /** The engine thread; exposed for tests that kill it. */
  readonly worker: Worker;
  private readonly live = new Map<string, AsyncQueue<Item>>();
  private readonly deathListeners: Array<(reason: string) => void> = [];
  private readonly logger: NonNullable<EngineOptions["logger"]> | undefined;
  private info: ModelInfo | null = null;
  private latestStats: EngineStats = EMPTY_STATS;
  private deadReason: string | null = null;
  private stopping = false;
  private exited = false;
  private closed: Promise<void>;
  private onClosed: () => void = () => {};
  private readonly shutdownTimeoutMs: number;

  /** Starts the thread and resolves once its executor is loaded (rejects with the load's error). */
  static async start(args: ThreadEngineArgs): Promise<ThreadEngine> {
    const engine = new ThreadEngine(args);
    await engine.ready;
    return engine;
  }

  private readonly ready: Promise<void>;

  private constructor(args: ThreadEngineArgs) {
    super(HfTokenizer.fromDir(args.modelDir), resolveEngineOptions(args.options));
    const { logger, ...options } = args.options ?? {};
    this.logger = logger;
    this.shutdownTimeoutMs = args.shutdownTimeoutMs ?? 60_000;
    const data: EngineThreadData = {
      kind: "lmi-engine-thread",
      modelDir: args.modelDir,
      executor: args.executor,
      options,
    };
    this.worker = startServerThread(new URL("./worker-entry.mjs", import.meta.url), data);
    this.closed = new Promise((resolve) => {
      this.onClosed = resolve;
    });
    this.ready = new Promise<void>((resolve, reject) => {
      const fail = (err: Error) => {
        if (this.info === null) reject(err);
      };
      this.worker.on("message", (m: FromEngineThread) => {
        if (m.type === "ready") {
          this.info = m.modelInfo;
          this.latestStats = m.stats;
          resolve();
        } else if (m.type === "loadFailed") {
          this.stopping = true;
          fail(reviveError(m.error));
        } else this.onMessage(m);
      });
      this.worker.on("error", (err) => {
        fail(err);
        this.die(`The engine thread crashed: ${err.message}`);
      });
      this.worker.on("exit", (code) => {
        this.exited = true;
        this.onClosed();
        fail(new EngineDeadError(`The engine thread exited with code ${code} while loading the model.`));
        this.die(`The engine thread exited with code ${code}.`);
      });
    });
  }

  get modelInfo(): ModelInfo {
    if (this.info === null) throw new EngineDeadError(this.deadReason ?? undefined);
    return this.info;
  }

  onDeath(listener: (reason: string) => void): void {
    this.deathListeners.push(listener);
  }

  async *generate(request: GenerateRequest, signal?: AbortSignal): AsyncGenerator<RequestOutput> {
    if (this.deadReason !== null || this.stopping) {
      throw new EngineDeadError(this.deadReason ?? "The inference engine is shutting down.");
    }
    const id = request.requestId;
    if (this.live.has(id))
      throw new ValidationError(`A request with id ${id} is already running`, "requestId");
    const queue = new AsyncQueue<Item>();
    this.live.set(id, queue);
    this.send({ type: "generate", request });
    yield* deltasOf(
      queue,
      () => this.send({ type: "abort", requestId: id }),
      signal,
      () => this.live.delete(id),
    );
  }

  /** The engine's counters as of its latest message (they change only as it steps or takes requests). */
  stats(): EngineStats {
    return this.latestStats;
  }

  async shutdown(): Promise<void> {
    if (!this.stopping) {
      this.stopping = true;
      this.send({ type: "shutdown" });
    }
    const timer = setTimeout(() => void this.worker.terminate(), this.shutdownTimeoutMs);
    await this.closed;
    clearTimeout(timer);
  }

  private send(m: ToEngineThread): void {
    if (!this.exited) this.worker.postMessage(m);
  }

  private onMessage(m: FromEngineThread): void {
    switch (m.type) {
      case "outputs":
        this.latestStats = m.stats;
        for (const r of m.rejected) this.live.get(r.requestId)?.push(reviveError(r.error));
        for (const out of m.outputs) this.live.get(out.requestId)?.push(out);
        // The streams write these deltas in the microtasks that follow; the answer waits one turn more, so
        // this thread's sockets and timers run before the next message can (messages.ts).
        setImmediate(() => this.send({ type: "outputsTaken" }));
        return;
      case "log":
        this.logger?.[m.level](m.message);
        return;
      case "death":
        this.die(m.reason);
        return;
      case "closed":
        this.onClosed();
        void this.worker.terminate();
        return;
      default:
        return;
    }
  }

  /** The thread is gone or its engine died: end every open stream, refuse new requests, tell listeners. */
  private die(reason: string): void {
    if (this.deadReason !== null) return;
    this.deadReason = this.stopping ? "The inference engine is shut down." : reason;
    for (const [requestId, queue] of this.live) {
      queue.push({
        requestId,
        tokens: [],
        textDelta: "",
        finished: true,
        finishReason: "error",
        error: reason,
      });
    }
    this.live.clear();
    if (!this.stopping && this.info !== null) for (const l of this.deathListeners) l(reason);
  }
}
