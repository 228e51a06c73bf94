// Statistics against values worked out by hand with numpy's rules (linear percentiles, ddof=0 std).
import assert from "node:assert/strict";
import { test } from "node:test";
import { mean, median, percentile, slope, std, summarize } from "./stats.ts";

const close = (a: number | null, b: number, eps = 1e-9) =>
  assert.ok(a !== null && Math.abs(a - b) < eps, `${a} != ${b}`);

test("percentile interpolates between order statistics like np.percentile", () => {
  const xs = [10, 1, 4, 3, 2]; // sorted 1 2 3 4 10
  close(percentile(xs, 90), 7.6); // rank 3.6: 4 + 0.6 * 6
  close(percentile(xs, 99), 9.76); // rank 3.96
  close(percentile(xs, 0), 1);
  close(percentile(xs, 100), 10);
  close(median(xs), 3);
  close(median([1, 2, 3, 4]), 2.5);
  assert.throws(() => percentile(xs, 101), RangeError);
});

test("mean and population std", () => {
  close(mean([1, 2, 3, 4, 10]), 4);
  close(std([1, 2, 3, 4, 10]), Math.sqrt(10)); // (9+4+1+0+36)/5
  close(std([5]), 0);
});

test("an empty sample has null statistics, not zeros", () => {
  const s = summarize([], [90, 99]);
  assert.deepEqual(s, { mean: null, median: null, std: null, percentiles: { "90": null, "99": null } });
});

test("summarize does not reorder its input", () => {
  const xs = [3, 1, 2];
  const s = summarize(xs, [50]);
  assert.deepEqual(xs, [3, 1, 2]);
  close(s.percentiles["50"], 2);
});

test("slope is the least-squares fit (numpy polyfit degree 1), 0 when undefined", () => {
  close(slope([0, 1, 2, 3], [1, 3, 2, 6]), 1.4); // polyfit([0,1,2,3],[1,3,2,6],1)[0]
  assert.equal(slope([5], [7]), 0);
  assert.equal(slope([2, 2, 2], [1, 2, 3]), 0);
});
