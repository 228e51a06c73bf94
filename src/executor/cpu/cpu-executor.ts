// The CPU executor as servers use it: CpuModelRunner on a worker_thread, so the main thread stays free
// for HTTP while a step computes. Invariants: calls are forwarded in order and answered by id; when
// the thread dies (exit or uncaught error) every in-flight and later call rejects with ExecutorError
// at once and onDeath listeners run exactly once. shutdown() is not a death.
import type { Worker } from "node:worker_threads";
import { ExecutorError } from "../../errors.ts";
import { startServerThread } from "../../server-thread.ts";
import type {
  CacheProfile,
  Executor,
  ExecutorHealth,
  ModelInfo,
  ModelRunnerOutput,
  SchedulerOutput,
} from "../types.ts";
import type { CpuExecutorOptions } from "./model-runner.ts";
import type { CallMessage, CpuThreadData, ReplyMessage } from "./worker.ts";

export type { CpuExecutorOptions } from "./model-runner.ts";

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

export class CpuExecutor implements Executor {
  /** The thread; exposed for supervision and for tests that kill it. */
  readonly worker: Worker;
  /**
   * The thread runs steps in order and keeps each request's tokens, so the engine may send the next
   * step before this one's output is back: the main thread's work then overlaps the thread's compute.
   */
  readonly maxStepsInFlight = 2;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly deathListeners: Array<(err: Error) => void> = [];
  private deadError: Error | null = null;
  private stopping = false;

  constructor(opts: CpuExecutorOptions) {
    // worker-entry.mjs registers tsx inside the thread, so this works however the main thread loaded
    // TypeScript (node --import tsx, or tsx/esm/api register() as bin/lmi.mjs does), and from the bundle.
    const data: CpuThreadData = { kind: "lmi-cpu-executor-thread", options: opts };
    this.worker = startServerThread(new URL("./worker-entry.mjs", import.meta.url), data);
    this.worker.unref();
    this.worker.on("message", (m: ReplyMessage) => this.onReply(m));
    this.worker.on("error", (err) =>
      this.die(new ExecutorError(`CPU executor thread crashed: ${err.message}`, { cause: err })),
    );
    this.worker.on("exit", (code) =>
      this.die(new ExecutorError(`CPU executor thread exited with code ${code}`)),
    );
  }

  private onReply(m: ReplyMessage): void {
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    if (this.pending.size === 0) this.worker.unref();
    if (m.ok) p.resolve(m.value);
    else p.reject(new ExecutorError(`CPU executor: ${m.message}`));
  }

  private die(err: Error): void {
    if (this.deadError) return;
    this.deadError = this.stopping ? new ExecutorError("CPU executor is shut down") : err;
    for (const p of this.pending.values()) p.reject(this.deadError);
    this.pending.clear();
    if (!this.stopping) for (const l of this.deathListeners) l(err);
  }

  private call<T>(method: CallMessage["method"], ...args: unknown[]): Promise<T> {
    if (this.deadError) return Promise.reject(this.deadError);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      // Keep the process alive only while a call is in flight; an idle executor must not block exit.
      this.worker.ref();
      this.worker.postMessage({ id, method, args } satisfies CallMessage);
    });
  }

  load(): Promise<ModelInfo> {
    return this.call("load");
  }
  profile(): Promise<CacheProfile> {
    return this.call("profile");
  }
  initCache(numBlocks: number): Promise<void> {
    return this.call("initCache", numBlocks);
  }
  execute(plan: SchedulerOutput): Promise<ModelRunnerOutput> {
    return this.call("execute", plan);
  }
  async health(): Promise<ExecutorHealth> {
    if (this.deadError) return { ok: false, detail: this.deadError.message };
    return this.call("health");
  }
  async shutdown(): Promise<void> {
    if (this.deadError) return;
    this.stopping = true;
    // A terminating worker does not hold the event loop open (not even ref'd, seen with a step in
    // flight), so a caller awaiting shutdown() (lmi serve's close, test teardown) could see the process
    // run dry and end before it resolves. A timer keeps the loop alive until the thread has exited.
    const keepAlive = setInterval(() => {}, 60_000);
    try {
      await this.worker.terminate();
    } finally {
      clearInterval(keepAlive);
    }
  }
  onDeath(listener: (err: Error) => void): void {
    this.deathListeners.push(listener);
  }
}

/** A CPU executor on its own worker_thread. */
export function createCpuExecutor(opts: CpuExecutorOptions): CpuExecutor {
  return new CpuExecutor(opts);
}
