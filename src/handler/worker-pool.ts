// Supervises a model's Python workers (spec §5.3, §5.8): each slot runs one worker, feeds it batches
// from the shared job queue, and restarts it after a crash or a timeout, counting failures.
// Invariants: a failed *initial* load fails start() and marks the model FAILED (no restart loop);
// after that, a dead worker is restarted (with backoff) and only the request it was serving fails.

import { EngineDeadError, OverloadedError, type ServerError } from "../errors.ts";
import { encodeBatch, type Job, JobQueue, splitBatch } from "./batch.ts";
import type { LaunchCommand } from "./launch.ts";
import type { DjlInput } from "./protocol.ts";
import { PythonWorker, type WorkerLog } from "./python-worker.ts";

export type ModelHealth = "PENDING" | "READY" | "FAILED" | "UNHEALTHY";

export interface WorkerDescription {
  id: number;
  pid: number | null;
  startTime: string;
  status: "READY" | "PENDING" | "FAILED" | "STOPPED";
  restarts: number;
}

export interface PoolOptions {
  modelName: string;
  minWorkers: number;
  maxWorkers: number;
  batchSize: number;
  maxBatchDelayMs: number;
  jobQueueSize: number;
  loadTimeoutMs: number;
  predictTimeoutMs: number;
  startupTimeoutMs: number;
  retryThreshold: number;
  /** max_idle_time: workers above minWorkers stop after this long without a request. */
  maxIdleMs: number;
  /** Properties added to every request (e.g. `handler`). */
  sharedProperties: Record<string, string>;
  /** The init request: all model options without the `option.` prefix. */
  initProperties: Record<string, string>;
  /** How to launch worker `index` (devices and socket differ per worker). */
  launchFor(index: number): LaunchCommand;
  log: WorkerLog;
}

/** Restarts after this many consecutive failed restarts stop; the slot is then dead. */
const MAX_CONSECUTIVE_RESTART_FAILURES = 5;

interface Slot {
  index: number;
  worker: PythonWorker | null;
  state: "PENDING" | "READY" | "FAILED" | "STOPPED";
  stop: AbortController;
  restarts: number;
  busy: boolean;
  loop: Promise<void>;
}

export class WorkerPool {
  readonly queue: JobQueue;
  private slots: Slot[] = [];
  private failures = 0;
  private initialError: ServerError | null = null;
  private started = false;
  private nextIndex = 0;

  constructor(private readonly o: PoolOptions) {
    this.queue = new JobQueue(o.jobQueueSize, o.modelName);
  }

  /** Starts minWorkers workers (at least one) and resolves once all of them have loaded the model. */
  async start(): Promise<void> {
    const n = Math.max(1, Math.min(this.o.minWorkers, this.o.maxWorkers));
    const firstLoads = Array.from({ length: n }, () => this.addSlot());
    const results = await Promise.allSettled(firstLoads);
    this.started = true;
    const failed = results.find((r) => r.status === "rejected");
    if (failed) {
      this.initialError = (failed as PromiseRejectedResult).reason;
      await this.shutdown();
      throw this.initialError;
    }
  }

  /** A failure before any worker started (e.g. requirements.txt): the model is FAILED. */
  markFailed(err: ServerError): void {
    this.initialError = err;
  }

  status(): ModelHealth {
    if (this.initialError) return "FAILED";
    if (!this.started) return "PENDING";
    if (this.failures > this.o.retryThreshold) return "FAILED";
    if (this.o.maxWorkers === 0) return "UNHEALTHY";
    // minWorkers 0 requires nothing: workers start on demand.
    const ready = this.slots.filter((s) => s.state === "READY").length;
    return ready >= this.o.minWorkers ? "READY" : "UNHEALTHY";
  }

  failedCount(): number {
    return this.failures;
  }

  describeWorkers(): WorkerDescription[] {
    return this.slots.map((s) => ({
      id: s.index,
      pid: s.worker?.pid ?? null,
      startTime: (s.worker?.startTime ?? new Date()).toISOString(),
      status: s.state,
      restarts: s.restarts,
    }));
  }

  submit(input: DjlInput, signal?: AbortSignal): Promise<import("./protocol.ts").DjlOutput> {
    if (this.o.maxWorkers === 0) {
      return Promise.reject(new OverloadedError(`All model workers has been shutdown: ${this.o.modelName}`));
    }
    return new Promise((resolve, reject) => {
      this.queue.add({ input, resolve, reject, signal });
      // Grow towards maxWorkers while requests wait and every worker is busy (DJL scales on load);
      // this also restarts from zero workers (minWorkers 0, or every slot given up).
      if (this.started && this.slots.length < this.o.maxWorkers && this.queue.length > this.numIdle()) {
        this.addSlot().catch((e) => this.o.log("error", `extra worker for ${this.o.modelName} failed: ${e}`));
      }
    });
  }

  /** Sets the worker range: stops slots above max, starts slots up to min. */
  async scale(minWorkers: number, maxWorkers: number): Promise<void> {
    if (minWorkers < 0 || maxWorkers < minWorkers) {
      throw new RangeError(`invalid worker range min=${minWorkers} max=${maxWorkers}`);
    }
    this.o.minWorkers = minWorkers;
    this.o.maxWorkers = maxWorkers;
    const extra = this.slots.slice(maxWorkers);
    this.slots = this.slots.slice(0, maxWorkers);
    await Promise.all(extra.map((s) => this.stopSlot(s)));
    if (maxWorkers === 0)
      this.queue.failPending(new OverloadedError(`All model workers has been shutdown: ${this.o.modelName}`));
    const adds: Promise<void>[] = [];
    while (this.slots.length + adds.length < minWorkers) adds.push(this.addSlot());
    await Promise.all(adds);
  }

  async shutdown(): Promise<void> {
    this.queue.close(new EngineDeadError(`Model ${this.o.modelName} is shut down.`));
    const slots = this.slots.splice(0);
    await Promise.all(slots.map((s) => this.stopSlot(s)));
  }

  /** Workers that will take a job soon: loading ones, and ready ones not running a batch. */
  private numIdle(): number {
    return this.slots.filter((s) => s.state === "PENDING" || (s.state === "READY" && !s.busy)).length;
  }

  private async stopSlot(s: Slot): Promise<void> {
    s.stop.abort();
    s.state = "STOPPED";
    await s.worker?.stop();
    await s.loop.catch(() => {});
  }

  /** Adds a slot; resolves when its first worker is ready, rejects if that first load fails. */
  private addSlot(): Promise<void> {
    const slot: Slot = {
      index: this.nextIndex++,
      worker: null,
      state: "PENDING",
      stop: new AbortController(),
      restarts: 0,
      busy: false,
      loop: Promise.resolve(),
    };
    this.slots.push(slot);
    let firstLoad!: { resolve: () => void; reject: (e: ServerError) => void };
    const loaded = new Promise<void>((resolve, reject) => {
      firstLoad = { resolve, reject };
    });
    slot.loop = this.runSlot(slot, firstLoad);
    return loaded;
  }

  private async runSlot(slot: Slot, firstLoad: { resolve: () => void; reject: (e: ServerError) => void }) {
    let initial = true;
    let consecutive = 0;
    while (!slot.stop.signal.aborted) {
      const worker = new PythonWorker({
        id: slot.index,
        modelName: this.o.modelName,
        launch: this.o.launchFor(slot.index),
        startupTimeoutMs: this.o.startupTimeoutMs,
        log: this.o.log,
      });
      slot.worker = worker;
      slot.state = "PENDING";
      try {
        await worker.start({ properties: this.o.initProperties, content: [] }, this.o.loadTimeoutMs);
      } catch (e) {
        if (initial) {
          slot.state = "FAILED";
          this.slots = this.slots.filter((s) => s !== slot);
          firstLoad.reject(e as ServerError);
          return;
        }
        this.failures++;
        consecutive++;
        this.o.log(
          "error",
          `restart of worker ${slot.index} of ${this.o.modelName} failed: ${(e as Error).message}`,
        );
        if (consecutive >= MAX_CONSECUTIVE_RESTART_FAILURES) {
          slot.state = "FAILED";
          this.onSlotDead(slot);
          return;
        }
        await sleep(Math.min(30_000, 500 * 2 ** consecutive), slot.stop.signal);
        continue;
      }
      slot.state = "READY";
      consecutive = 0;
      if (initial) firstLoad.resolve();
      initial = false;
      await this.serve(slot, worker);
      if (slot.stop.signal.aborted) break;
      this.failures++;
      slot.restarts++;
      this.o.log(
        "warn",
        `worker ${slot.index} of ${this.o.modelName} stopped (${worker.describeExit()}); restarting, failures=${this.failures}`,
      );
      worker.kill();
      await worker.exited;
    }
    slot.state = "STOPPED";
  }

  /** Feeds the worker until it dies or its slot stops. */
  private async serve(slot: Slot, worker: PythonWorker): Promise<void> {
    const gone = new AbortController();
    void worker.exited.then(() => gone.abort());
    const stop = AbortSignal.any([slot.stop.signal, gone.signal]);
    while (worker.isAlive && !stop.aborted) {
      // Workers above minWorkers retire after max_idle_time without work.
      const extra = this.slots.indexOf(slot) >= this.o.minWorkers;
      const jobs = await this.queue.take(
        this.o.batchSize,
        this.o.maxBatchDelayMs,
        stop,
        extra ? this.o.maxIdleMs : undefined,
      );
      if (jobs.length === 0) {
        if (extra && !stop.aborted && worker.isAlive && this.slots.indexOf(slot) >= this.o.minWorkers) {
          this.o.log(
            "info",
            `worker ${slot.index} of ${this.o.modelName} idle for ${this.o.maxIdleMs / 1000} s; stopping it`,
          );
          this.slots = this.slots.filter((s) => s !== slot);
          slot.stop.abort();
          await worker.stop();
        }
        continue;
      }
      if (!worker.isAlive) {
        this.queue.requeue(jobs); // never sent: the restarted worker takes them
        return;
      }
      slot.busy = true;
      try {
        await this.runBatch(worker, jobs);
      } finally {
        slot.busy = false;
      }
    }
  }

  private async runBatch(worker: PythonWorker, jobs: Job[]): Promise<void> {
    const input = encodeBatch(
      jobs.map((j) => j.input),
      this.o.sharedProperties,
    );
    let reply: Awaited<ReturnType<PythonWorker["predict"]>>;
    try {
      reply = await worker.predict(input, this.o.predictTimeoutMs);
    } catch (e) {
      for (const j of jobs) j.reject(e as Error);
      return;
    }
    try {
      const outputs = splitBatch(reply.output, jobs.length);
      for (const [i, j] of jobs.entries()) j.resolve(outputs[i]);
    } catch (e) {
      for (const j of jobs) j.reject(e as Error);
    }
    // The connection is busy until the reply (a stream included) has been read to its end.
    await reply.done.catch(() => {});
  }

  private onSlotDead(slot: Slot): void {
    this.slots = this.slots.filter((s) => s !== slot);
    if (this.slots.length === 0) {
      this.queue.failPending(new EngineDeadError(`All workers of ${this.o.modelName} failed to restart.`));
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener(
      "abort",
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });
}
