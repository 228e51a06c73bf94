// The CPU executor without a thread: the Executor interface over CpuModelRunner on the calling thread.
// Tests and the worker use it; servers use createCpuExecutor (worker_thread) so HTTP stays responsive.
// Every failure surfaces as ExecutorError; onDeath never fires because nothing here can die alone.
import { ExecutorError } from "../../errors.ts";
import type {
  CacheProfile,
  Executor,
  ExecutorHealth,
  ModelInfo,
  ModelRunnerOutput,
  SchedulerOutput,
} from "../types.ts";
import { type CpuExecutorOptions, CpuModelRunner } from "./model-runner.ts";
import { CpuPaddedRunner } from "./padded-runner.ts";

function wrap<T>(what: string, fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (err) {
    return Promise.reject(
      err instanceof ExecutorError
        ? err
        : new ExecutorError(`CPU executor ${what} failed: ${(err as Error).message}`, { cause: err }),
    );
  }
}

export class InThreadCpuExecutor implements Executor {
  readonly runner: CpuModelRunner | CpuPaddedRunner;
  private closed = false;

  constructor(opts: CpuExecutorOptions) {
    this.runner = opts.kvLayout === "padded" ? new CpuPaddedRunner(opts) : new CpuModelRunner(opts);
  }

  load(): Promise<ModelInfo> {
    return wrap("load", () => this.runner.load());
  }
  profile(): Promise<CacheProfile> {
    return wrap("profile", () => this.runner.profile());
  }
  initCache(numBlocks: number): Promise<void> {
    return wrap("initCache", () => this.runner.initCache(numBlocks));
  }
  execute(plan: SchedulerOutput): Promise<ModelRunnerOutput> {
    if (this.closed) return Promise.reject(new ExecutorError("CPU executor is shut down"));
    return wrap("execute", () => this.runner.execute(plan));
  }
  health(): Promise<ExecutorHealth> {
    return Promise.resolve(this.closed ? { ok: false, detail: "shut down" } : { ok: true });
  }
  shutdown(): Promise<void> {
    this.closed = true;
    // The padded runner wraps a paged one; either way the helper threads belong to the loaded model.
    if ("close" in this.runner) this.runner.close();
    return Promise.resolve();
  }
  onDeath(_listener: (err: Error) => void): void {}
}

export function createInThreadCpuExecutor(opts: CpuExecutorOptions): InThreadCpuExecutor {
  return new InThreadCpuExecutor(opts);
}
