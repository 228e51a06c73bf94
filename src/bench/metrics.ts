// Turns per-request measurements into the aggregate metrics of `vllm bench serve` (perf-anchors §4.1):
// TTFT, TPOT = (E2EL − TTFT)/(n − 1) over requests with n > 1, ITL over every chunk gap of every request,
// E2EL, request/output/total throughput over the run's duration, goodput (requests meeting every given
// SLO, a 1-token request counting TPOT 0), and peak output tok/s and peak concurrency in 1-second buckets.
// Only successful requests count anywhere, failed ones add to `failed`; all times are milliseconds.

import { type Summary, summarize } from "./stats.ts";

/** What one request measured; times are ms, `startMs` on the run's clock (performance.now()). */
export interface RequestResult {
  success: boolean;
  error?: string;
  promptLen: number;
  /** Output tokens by the backend's counting rule (docs/bench.md). */
  outputTokens: number;
  startMs: number;
  /** First chunk carrying generation − send. */
  ttftMs: number;
  /** Gaps between consecutive chunks after the first. */
  itlMs: number[];
  /** Last chunk − send. */
  latencyMs: number;
}

/** Service-level objectives for goodput, in ms; a request is good when it meets all that are set. */
export interface Slo {
  ttftMs?: number;
  tpotMs?: number;
  e2elMs?: number;
}

export interface BenchMetrics {
  completed: number;
  failed: number;
  durationS: number;
  totalInputTokens: number;
  totalOutputTokens: number;
  requestThroughput: number;
  requestGoodput: number | null;
  outputThroughput: number;
  totalTokenThroughput: number;
  maxOutputTokensPerS: number;
  maxConcurrentRequests: number;
  ttftMs: Summary;
  tpotMs: Summary;
  itlMs: Summary;
  e2elMs: Summary;
}

export function calculateMetrics(
  results: readonly RequestResult[],
  durationS: number,
  percentiles: readonly number[],
  slo: Slo = {},
): BenchMetrics {
  if (!(durationS > 0)) throw new RangeError(`duration must be > 0 s, got ${durationS}`);
  const ok = results.filter((r) => r.success);
  const ttfts: number[] = [];
  const tpots: number[] = [];
  const itls: number[] = [];
  const e2els: number[] = [];
  let totalIn = 0;
  let totalOut = 0;
  let good = 0;
  for (const r of ok) {
    totalIn += r.promptLen;
    totalOut += r.outputTokens;
    ttfts.push(r.ttftMs);
    e2els.push(r.latencyMs);
    for (const g of r.itlMs) itls.push(g);
    // vLLM's goodput reads TPOT as 0 for a single-token request; the TPOT summary leaves it out.
    const tpot = r.outputTokens > 1 ? (r.latencyMs - r.ttftMs) / (r.outputTokens - 1) : 0;
    if (r.outputTokens > 1) tpots.push(tpot);
    if (meetsSlo(slo, r.ttftMs, tpot, r.latencyMs)) good++;
  }
  const hasSlo = slo.ttftMs !== undefined || slo.tpotMs !== undefined || slo.e2elMs !== undefined;
  const peaks = peakRates(ok);
  return {
    completed: ok.length,
    failed: results.length - ok.length,
    durationS,
    totalInputTokens: totalIn,
    totalOutputTokens: totalOut,
    requestThroughput: ok.length / durationS,
    requestGoodput: hasSlo ? good / durationS : null,
    outputThroughput: totalOut / durationS,
    totalTokenThroughput: (totalIn + totalOut) / durationS,
    maxOutputTokensPerS: peaks.tokens,
    maxConcurrentRequests: peaks.concurrency,
    ttftMs: summarize(ttfts, percentiles),
    tpotMs: summarize(tpots, percentiles),
    itlMs: summarize(itls, percentiles),
    e2elMs: summarize(e2els, percentiles),
  };
}

/** An SLO is met when the value is at most the bound (vLLM compares `slo >= value`). */
function meetsSlo(slo: Slo, ttft: number, tpot: number, e2el: number): boolean {
  if (slo.ttftMs !== undefined && ttft > slo.ttftMs) return false;
  if (slo.tpotMs !== undefined && tpot > slo.tpotMs) return false;
  if (slo.e2elMs !== undefined && e2el > slo.e2elMs) return false;
  return true;
}

/**
 * Peak chunks per 1-second bucket (each chunk counted as one token, as vLLM does) and peak number of
 * requests in flight during any bucket, with buckets counted from the earliest request start.
 */
export function peakRates(ok: readonly RequestResult[]): { tokens: number; concurrency: number } {
  if (ok.length === 0) return { tokens: 0, concurrency: 0 };
  const t0 = ok.reduce((a, r) => Math.min(a, r.startMs), Number.POSITIVE_INFINITY);
  const end = ok.reduce((a, r) => Math.max(a, r.startMs + r.latencyMs), Number.NEGATIVE_INFINITY);
  const n = Math.ceil((end - t0) / 1000) + 1;
  const tokens = new Array<number>(n).fill(0);
  const conc = new Array<number>(n).fill(0);
  for (const r of ok) {
    let t = r.startMs + r.ttftMs;
    tokens[Math.floor((t - t0) / 1000)]++;
    for (const g of r.itlMs) {
      t += g;
      const b = Math.floor((t - t0) / 1000);
      if (b >= 0 && b < n) tokens[b]++;
    }
    const first = Math.floor((r.startMs - t0) / 1000);
    const last = Math.floor((r.startMs + r.latencyMs - t0) / 1000);
    for (let s = first; s <= last; s++) conc[s]++;
  }
  // Reduce, not Math.max(...xs): a long run has more buckets than a call may take arguments.
  const max = (xs: number[]) => xs.reduce((a, b) => Math.max(a, b), 0);
  return { tokens: max(tokens), concurrency: max(conc) };
}
