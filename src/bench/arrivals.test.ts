// Arrival process: inf sends at once; finite rates give gamma gaps with mean 1/r and coefficient of
// variation 1/sqrt(burstiness) (checked on many seeded samples); the same seed repeats exactly.
import assert from "node:assert/strict";
import { test } from "node:test";
import { arrivalOffsetsMs } from "./arrivals.ts";
import { Rng } from "./random.ts";

function gaps(n: number, rate: number, b: number, seed = 7): number[] {
  const t = arrivalOffsetsMs(n, rate, b, new Rng(seed));
  return t.slice(1).map((v, i) => v - t[i]);
}
const meanOf = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const cvOf = (xs: number[]) => {
  const m = meanOf(xs);
  return Math.sqrt(meanOf(xs.map((x) => (x - m) ** 2))) / m;
};

test("rate inf sends every request at t=0", () => {
  assert.deepEqual(arrivalOffsetsMs(4, Number.POSITIVE_INFINITY, 1, new Rng(1)), [0, 0, 0, 0]);
});

test("Poisson arrivals: exponential gaps, mean 1/r, CV 1", () => {
  const g = gaps(20001, 10, 1);
  assert.ok(Math.abs(meanOf(g) - 100) < 3, `mean gap ${meanOf(g)} ms`);
  assert.ok(Math.abs(cvOf(g) - 1) < 0.05, `cv ${cvOf(g)}`);
});

test("burstiness sets the gamma shape: same mean, CV 1/sqrt(b)", () => {
  for (const b of [0.25, 4]) {
    const g = gaps(20001, 5, b);
    assert.ok(Math.abs(meanOf(g) / 200 - 1) < 0.05, `b=${b}: mean ${meanOf(g)}`);
    assert.ok(Math.abs(cvOf(g) - 1 / Math.sqrt(b)) < 0.1, `b=${b}: cv ${cvOf(g)}`);
  }
});

test("offsets start at 0, never decrease, and repeat for a seed", () => {
  const a = arrivalOffsetsMs(50, 3, 0.5, new Rng(42));
  assert.equal(a[0], 0);
  assert.ok(a.every((v, i) => i === 0 || v >= a[i - 1]));
  assert.deepEqual(a, arrivalOffsetsMs(50, 3, 0.5, new Rng(42)));
  assert.notDeepEqual(a, arrivalOffsetsMs(50, 3, 0.5, new Rng(43)));
  assert.throws(() => arrivalOffsetsMs(2, 0, 1, new Rng(1)), RangeError);
  assert.throws(() => arrivalOffsetsMs(2, 1, 0, new Rng(1)), RangeError);
});

test("Rng.int covers both ends of its range and nothing outside", () => {
  const rng = new Rng(3);
  const seen = new Set<number>();
  for (let i = 0; i < 2000; i++) seen.add(rng.int(5, 9));
  assert.deepEqual([...seen].sort(), [5, 6, 7, 8, 9]);
});
