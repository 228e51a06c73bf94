// Dynamic batching (spec §5.6, §4.6): the job queue that hands a worker up to `batch_size` requests,
// waiting at most `max_batch_delay` ms after the first, and the encoding of N requests into one Input
// (`batch_size` + `batch_%03d.`-prefixed properties and content) and of the reply back into N outputs.
// Invariants: a job is taken by exactly one worker; queue order is arrival order; a reply that cannot
// be split exactly (missing or extra items) fails every request of the batch.

import { OverloadedError } from "../errors.ts";
import { WorkerError } from "./errors.ts";
import type { DjlInput, DjlOutput } from "./protocol.ts";

const BATCH_KEY = /^batch_(\d+)\.(.*)$/s;

function prefix(i: number): string {
  return `batch_${String(i).padStart(3, "0")}.`;
}

/** N requests -> one Input. One request is sent as it is. `shared` properties go unprefixed. */
export function encodeBatch(inputs: DjlInput[], shared: Record<string, string>): DjlInput {
  if (inputs.length === 1)
    return { properties: { ...inputs[0].properties, ...shared }, content: inputs[0].content };
  const properties: Record<string, string> = { batch_size: String(inputs.length), ...shared };
  const content: DjlInput["content"] = [];
  inputs.forEach((input, i) => {
    for (const [k, v] of Object.entries(input.properties)) properties[prefix(i) + k] = v;
    for (const c of input.content) content.push({ key: prefix(i) + (c.key || "data"), value: c.value });
  });
  return { properties, content };
}

/**
 * One reply -> N outputs. Code and message are shared; `batch_<i>.`-prefixed properties go to
 * request i only, the others to all. An error reply (>= 300) goes to every request unchanged.
 */
export function splitBatch(out: DjlOutput, n: number): DjlOutput[] {
  if (n === 1) return [out];
  if (out.code >= 300) return Array.from({ length: n }, () => out);
  if (out.stream)
    throw new WorkerError(
      `the handler streamed a reply to a dynamic batch of ${n}; streaming needs batch_size=1`,
    );
  const shared: Record<string, string> = {};
  const perItem: Array<Record<string, string>> = Array.from({ length: n }, () => ({}));
  for (const [k, v] of Object.entries(out.properties)) {
    const m = BATCH_KEY.exec(k);
    if (m && Number(m[1]) < n) perItem[Number(m[1])][m[2]] = v;
    else shared[k] = v;
  }
  const contents: Array<DjlOutput["content"]> = Array.from({ length: n }, () => []);
  for (const c of out.content) {
    const m = BATCH_KEY.exec(c.key);
    if (!m || Number(m[1]) >= n) {
      throw new WorkerError(
        `batch reply has content '${c.key}', which belongs to no request of the batch of ${n}`,
      );
    }
    contents[Number(m[1])].push({ key: m[2], value: c.value });
  }
  const missing = contents.flatMap((c, i) => (c.length === 0 ? [i] : []));
  if (missing.length > 0) {
    throw new WorkerError(
      `batch reply has ${out.content.length} items but no output for request(s) ${missing.join(", ")} of ${n}`,
    );
  }
  return contents.map((content, i) => ({
    code: out.code,
    message: out.message,
    properties: { ...shared, ...perItem[i] },
    content,
  }));
}

export interface Job {
  input: DjlInput;
  resolve(out: DjlOutput): void;
  reject(err: Error): void;
  signal?: AbortSignal;
}

/** The per-model job queue (job_queue_size) from which every worker takes its batches. */
export class JobQueue {
  private jobs: Job[] = [];
  private waiters: Array<() => void> = [];
  private closedWith: Error | null = null;

  constructor(
    private readonly capacity: number,
    private readonly modelName: string,
  ) {}

  get length(): number {
    return this.jobs.length;
  }

  add(job: Job): void {
    if (this.closedWith) throw this.closedWith;
    if (this.jobs.length >= this.capacity) {
      throw new OverloadedError(`Worker queue capacity exceeded for model: ${this.modelName}`);
    }
    if (job.signal) {
      // A client that went away before a worker took its job is dropped from the queue.
      job.signal.addEventListener(
        "abort",
        () => {
          const i = this.jobs.indexOf(job);
          if (i >= 0) {
            this.jobs.splice(i, 1);
            job.reject(new Error("the request was cancelled before a worker took it"));
          }
        },
        { once: true },
      );
    }
    this.jobs.push(job);
    this.wakeOne();
  }

  /**
   * Waits for a first job, then up to maxDelayMs for more, up to maxSize. Returns [] when the
   * queue is closed, `stop` fires, or no job came within idleMs (when given), so a worker loop can
   * exit or retire an idle worker.
   */
  async take(maxSize: number, maxDelayMs: number, stop: AbortSignal, idleMs?: number): Promise<Job[]> {
    const idleUntil = idleMs === undefined ? null : Date.now() + idleMs;
    while (this.jobs.length === 0) {
      if (this.closedWith || stop.aborted) return [];
      const left = idleUntil === null ? null : idleUntil - Date.now();
      if (left !== null && left <= 0) return [];
      await this.waitForJob(stop, left);
    }
    const batch = this.jobs.splice(0, maxSize);
    const deadline = Date.now() + maxDelayMs;
    while (batch.length < maxSize && !stop.aborted) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      if (this.jobs.length === 0) await this.waitForJob(stop, left);
      batch.push(...this.jobs.splice(0, maxSize - batch.length));
    }
    return batch;
  }

  /** Fails every queued job and every later add with `err` (model unloaded, all workers dead). */
  close(err: Error): void {
    this.closedWith = err;
    for (const job of this.jobs.splice(0)) job.reject(err);
    for (const w of this.waiters.splice(0)) w();
  }

  /** Puts jobs that were taken but never sent back at the head of the queue, in order. */
  requeue(jobs: Job[]): void {
    if (this.closedWith) {
      for (const job of jobs) job.reject(this.closedWith);
      return;
    }
    this.jobs.unshift(...jobs);
    for (let i = 0; i < jobs.length; i++) this.wakeOne();
  }

  /** Fails the jobs queued now with err, but keeps accepting new ones. */
  failPending(err: Error): void {
    for (const job of this.jobs.splice(0)) job.reject(err);
  }

  reopen(): void {
    this.closedWith = null;
  }

  private wakeOne(): void {
    this.waiters.shift()?.();
  }

  private waitForJob(stop: AbortSignal, ms: number | null): Promise<void> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const done = () => {
        clearTimeout(timer);
        stop.removeEventListener("abort", done);
        const i = this.waiters.indexOf(done);
        if (i >= 0) this.waiters.splice(i, 1);
        resolve();
      };
      if (ms !== null) timer = setTimeout(done, ms);
      stop.addEventListener("abort", done, { once: true });
      this.waiters.push(done);
    });
  }
}
