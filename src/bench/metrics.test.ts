// The aggregate metrics on a small run worked out by hand (see the comments for each expected value).
import assert from "node:assert/strict";
import { test } from "node:test";
import { calculateMetrics, peakRates, type RequestResult } from "./metrics.ts";

const ok = (r: Omit<RequestResult, "success">): RequestResult => ({ success: true, ...r });
// R1: 3 tokens, TPOT (150-100)/2 = 25. R2: 1 token, no TPOT. R3: 5 tokens, TPOT (90-50)/4 = 10. R4 failed.
const RUN: RequestResult[] = [
  ok({ promptLen: 10, outputTokens: 3, startMs: 0, ttftMs: 100, itlMs: [20, 30], latencyMs: 150 }),
  ok({ promptLen: 20, outputTokens: 1, startMs: 500, ttftMs: 200, itlMs: [], latencyMs: 200 }),
  ok({ promptLen: 30, outputTokens: 5, startMs: 1000, ttftMs: 50, itlMs: [10, 10, 10, 10], latencyMs: 90 }),
  {
    success: false,
    error: "HTTP 500",
    promptLen: 40,
    outputTokens: 0,
    startMs: 0,
    ttftMs: 0,
    itlMs: [],
    latencyMs: 0,
  },
];
const close = (a: number | null, b: number) =>
  assert.ok(a !== null && Math.abs(a - b) < 1e-9, `${a} != ${b}`);

test("counts and throughputs use successful requests over the duration", () => {
  const m = calculateMetrics(RUN, 2, [90, 99]);
  assert.equal(m.completed, 3);
  assert.equal(m.failed, 1);
  assert.equal(m.totalInputTokens, 60); // the failed request's 40 do not count
  assert.equal(m.totalOutputTokens, 9);
  close(m.requestThroughput, 1.5);
  close(m.outputThroughput, 4.5);
  close(m.totalTokenThroughput, 34.5);
  assert.equal(m.requestGoodput, null); // no SLO given
});

test("TTFT, TPOT, ITL and E2EL distributions", () => {
  const m = calculateMetrics(RUN, 2, [90]);
  close(m.ttftMs.mean, 350 / 3);
  close(m.ttftMs.median, 100);
  // TPOT only over requests with more than one token: [25, 10].
  close(m.tpotMs.mean, 17.5);
  close(m.tpotMs.percentiles["90"], 23.5); // 10 + 0.9 * 15
  // ITL pools every gap of every request: [20, 30, 10, 10, 10, 10].
  close(m.itlMs.mean, 15);
  close(m.itlMs.median, 10);
  close(m.itlMs.percentiles["90"], 25); // sorted ..., 20, 30: rank 4.5
  close(m.e2elMs.mean, 440 / 3);
  close(m.e2elMs.median, 150);
});

test("goodput: a request is good only when it meets every SLO, bounds inclusive", () => {
  // ttft<=150 and tpot<=20: R1 fails TPOT (25), R2 fails TTFT (200), R3 passes.
  close(calculateMetrics(RUN, 2, [], { ttftMs: 150, tpotMs: 20 }).requestGoodput, 0.5);
  // tpot<=20 alone: the single-token R2 counts TPOT 0 and passes, as in vLLM.
  close(calculateMetrics(RUN, 2, [], { tpotMs: 20 }).requestGoodput, 1);
  // ttft<=200: R2 sits exactly on the bound and passes.
  close(calculateMetrics(RUN, 2, [], { ttftMs: 200 }).requestGoodput, 1.5);
  close(calculateMetrics(RUN, 2, [], { e2elMs: 100 }).requestGoodput, 0.5);
});

test("peaks in 1-second buckets from the first start", () => {
  // Chunks at 100, 120, 150 (R1) and 700 (R2) land in second 0; R3's five at 1050..1090 in second 1.
  // R1 and R2 are both in flight during second 0.
  assert.deepEqual(peakRates(RUN.filter((r) => r.success)), { tokens: 5, concurrency: 2 });
  assert.deepEqual(peakRates([]), { tokens: 0, concurrency: 0 });
});

test("a run with no successes has null latencies and zero throughput", () => {
  const m = calculateMetrics([RUN[3]], 1, [99]);
  assert.equal(m.completed, 0);
  assert.equal(m.outputThroughput, 0);
  assert.equal(m.ttftMs.mean, null);
  assert.throws(() => calculateMetrics(RUN, 0, []), RangeError);
});
