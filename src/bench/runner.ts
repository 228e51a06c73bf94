// Runs one benchmark against a live server, as `vllm bench serve` does: a readiness request first (a
// server that cannot answer fails the run loudly), optional warm-up requests (not measured), then every
// request sent at its arrival offset; --max-concurrency queues arrivals behind a semaphore whose wait is
// not part of TTFT. The run's duration spans the first send to the last completion.

import { SingleBar } from "cli-progress";
import { arrivalOffsetsMs } from "./arrivals.ts";
import type { BackendSpec } from "./backends.ts";
import type { BenchRequest } from "./datasets.ts";
import { type BenchMetrics, calculateMetrics, type RequestResult, type Slo } from "./metrics.ts";
import type { Rng } from "./random.ts";
import { sendRequest } from "./request.ts";

export interface RunOptions {
  url: string;
  backend: BackendSpec;
  model?: string;
  requests: readonly BenchRequest[];
  ratePerS: number;
  burstiness: number;
  /** null = unlimited. */
  maxConcurrency: number | null;
  numWarmups: number;
  ignoreEos: boolean;
  timeoutMs: number;
  percentiles: readonly number[];
  slo: Slo;
  extraBody?: Record<string, unknown>;
  progress: boolean;
  /** Skip the readiness request (a sweep checks once, before its first level). */
  skipReadiness?: boolean;
}

export interface RunOutcome {
  metrics: BenchMetrics;
  results: RequestResult[];
  /** With ignore_eos: requests whose output length differs from the one asked for. */
  numLengthMismatches: number;
  /** Up to five distinct failure messages, so a broken run says why. */
  errors: string[];
}

class Semaphore {
  private waiting: Array<() => void> = [];
  constructor(private free: number) {}
  async acquire(): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return;
    }
    await new Promise<void>((r) => this.waiting.push(r));
  }
  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.free++;
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function runBenchmark(o: RunOptions, rng: Rng): Promise<RunOutcome> {
  if (o.requests.length === 0) throw new RangeError("no requests to send");
  const send = (r: BenchRequest, outputLen = r.outputLen) =>
    sendRequest(
      o.backend,
      { prompt: r.prompt, promptLen: r.promptLen, outputLen, ignoreEos: o.ignoreEos, model: o.model },
      { url: o.url, timeoutMs: o.timeoutMs, extraBody: o.extraBody },
    );
  if (!o.skipReadiness) await checkReady(o, send);
  for (let i = 0; i < o.numWarmups; i += o.maxConcurrency ?? o.numWarmups) {
    const n = Math.min(o.maxConcurrency ?? o.numWarmups, o.numWarmups - i);
    await Promise.all(Array.from({ length: n }, (_, k) => send(o.requests[(i + k) % o.requests.length])));
  }

  const offsets = arrivalOffsetsMs(o.requests.length, o.ratePerS, o.burstiness, rng);
  const sem = o.maxConcurrency === null ? null : new Semaphore(o.maxConcurrency);
  const bar = o.progress
    ? new SingleBar({
        format: "{bar} {value}/{total} requests | {duration_formatted} elapsed | {failed} failed",
        stream: process.stderr,
        hideCursor: true,
      })
    : null;
  let failed = 0;
  bar?.start(o.requests.length, 0, { failed });
  const t0 = performance.now();
  const tasks: Promise<RequestResult>[] = [];
  for (let i = 0; i < o.requests.length; i++) {
    // Timers may fire up to a millisecond early; re-check so no request leaves before its arrival time.
    for (
      let wait = t0 + offsets[i] - performance.now();
      wait > 0;
      wait = t0 + offsets[i] - performance.now()
    ) {
      await sleep(wait);
    }
    tasks.push(
      (async () => {
        await sem?.acquire();
        try {
          const r = await send(o.requests[i]);
          if (!r.success) failed++;
          bar?.increment(1, { failed });
          return r;
        } finally {
          sem?.release();
        }
      })(),
    );
  }
  const results = await Promise.all(tasks);
  const durationS = (performance.now() - t0) / 1000;
  bar?.stop();
  const errors = [...new Set(results.flatMap((r) => (r.error ? [r.error] : [])))].slice(0, 5);
  const numLengthMismatches = o.ignoreEos
    ? results.filter((r, i) => r.success && r.outputTokens !== o.requests[i].outputLen).length
    : 0;
  return {
    metrics: calculateMetrics(results, durationS, o.percentiles, o.slo),
    results,
    numLengthMismatches,
    errors,
  };
}

async function checkReady(
  o: RunOptions,
  send: (r: BenchRequest, outputLen?: number) => Promise<RequestResult>,
): Promise<void> {
  const first = o.requests[0];
  const r = await send(first, Math.min(first.outputLen, 8));
  if (!r.success) {
    throw new Error(
      `the readiness request to ${o.url} failed: ${r.error}. Check the URL, --backend and --endpoint.`,
    );
  }
}
