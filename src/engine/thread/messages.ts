// The messages between the HTTP thread's ThreadEngine and the engine thread (engine-worker.ts). Everything
// here is plain data (structured clone). One "outputs" message carries every delta the engine produced in
// one turn of its loop (one step, typically), so the HTTP thread gets one message per step, not one per
// request. At most one "outputs" message is unanswered: the engine thread sends the next only after
// "outputsTaken", collecting meanwhile. (A MessagePort's messages are handled ahead of the thread's timers and
// sockets while more keep arriving: without this, an HTTP thread that falls behind stops answering /ping and
// firing its timeouts for as long as the model outpaces it.) Errors cross as SerializedError and are rebuilt
// as the same ServerError class (errors.ts).

import type { ModelInfo } from "../../executor/types.ts";
import type { ExecutorSpec } from "../../registry/executor-spec.ts";
import type { EngineOptions } from "../engine-options.ts";
import type { EngineStats, GenerateRequest, RequestOutput } from "../protocol.ts";

/** workerData of the engine thread. */
export interface EngineThreadData {
  kind: "lmi-engine-thread";
  modelDir: string;
  executor: ExecutorSpec;
  /** Engine options without the logger (the thread logs through "log" messages). */
  options: Omit<EngineOptions, "logger">;
}

export type ToEngineThread =
  | { type: "generate"; request: GenerateRequest }
  /** The HTTP thread has handled the last "outputs" message and let its own I/O run: the next may come. */
  | { type: "outputsTaken" }
  | { type: "abort"; requestId: string }
  | { type: "shutdown" };

export interface SerializedError {
  message: string;
  status: number;
  type: string;
  field?: string;
  problems?: string[];
}

export type FromEngineThread =
  | { type: "ready"; modelInfo: ModelInfo; stats: EngineStats }
  | { type: "loadFailed"; error: SerializedError }
  | {
      type: "outputs";
      outputs: RequestOutput[];
      /** Requests refused at submission (what generate()'s first iteration rejects with). */
      rejected: Array<{ requestId: string; error: SerializedError }>;
      stats: EngineStats;
    }
  | { type: "log"; level: "warn" | "info"; message: string }
  | { type: "death"; reason: string }
  | { type: "closed" };
