// The max_sparsity / max_splits partition: the spec §4.3 tutorial example, and optimality against brute
// force over every set partition (not only contiguous ones) of random small batches.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { choosePartition, minPaddingByParts } from "./partition.ts";

const LENGTHS = [38, 33, 24, 22];

/** 1-based positions in the lengths sorted longest first, as the tutorial writes them. */
function tutorialForm(lengths: number[], parts: number[][]): number[][] {
  const sorted = [...lengths].sort((a, b) => b - a);
  return parts.map((p) => p.map((i) => sorted.indexOf(lengths[i]) + 1));
}

describe("choosePartition: spec §4.3 example (lengths 38, 33, 24, 22)", () => {
  // max_splits does not bind in the tutorial's table (0.01 needs four parts), so it is set to 4 here.
  const table: Array<[number, number[][]]> = [
    [0.01, [[1], [2], [3], [4]]],
    [0.025, [[1], [2], [3, 4]]],
    [
      0.1,
      [
        [1, 2],
        [3, 4],
      ],
    ],
    [0.9, [[1, 2, 3, 4]]],
  ];
  for (const [maxSparsity, expected] of table) {
    it(`max_sparsity ${maxSparsity} -> ${JSON.stringify(expected)}`, () => {
      const p = choosePartition(LENGTHS, { maxSparsity, maxSplits: 4 });
      assert.deepEqual(tutorialForm(LENGTHS, p.parts), expected);
    });
  }

  it("gives the sparsities the thresholds are compared with", () => {
    const one = choosePartition(LENGTHS, { maxSparsity: 1, maxSplits: 4 });
    assert.equal(one.padding, 4 * 38 - 117);
    assert.ok(Math.abs(one.sparsity - 35 / 152) < 1e-12);
    const two = choosePartition(LENGTHS, { maxSparsity: 0.1, maxSplits: 4 });
    assert.equal(two.padding, 5 + 2);
    assert.ok(Math.abs(two.sparsity - 7 / 124) < 1e-12);
  });

  it("the default max_splits=3 caps the 0.01 case at the least-padding three-way split", () => {
    const p = choosePartition(LENGTHS, { maxSparsity: 0.01, maxSplits: 3 });
    assert.deepEqual(tutorialForm(LENGTHS, p.parts), [[1], [2], [3, 4]]);
    assert.equal(p.padding, 2);
  });

  it("maps parts back to input order when the input is unsorted", () => {
    const p = choosePartition([22, 38, 24, 33], { maxSparsity: 0.1, maxSplits: 3 });
    assert.deepEqual(p.parts, [
      [1, 3],
      [2, 0],
    ]);
  });
});

/** Every set partition of [0, n): restricted-growth strings. */
function* setPartitions(n: number): Generator<number[][]> {
  const a = new Array(n).fill(0);
  function* rec(i: number, max: number): Generator<number[][]> {
    if (i === n) {
      const parts: number[][] = Array.from({ length: max + 1 }, () => []);
      for (const [idx, p] of a.entries()) parts[p].push(idx);
      yield parts;
      return;
    }
    for (let v = 0; v <= max + 1; v++) {
      a[i] = v;
      yield* rec(i + 1, Math.max(max, v));
    }
  }
  if (n > 0) yield* rec(1, 0);
}

function paddingOf(lengths: number[], parts: number[][]): number {
  let pad = 0;
  for (const p of parts) {
    const max = Math.max(...p.map((i) => lengths[i]));
    for (const i of p) pad += max - lengths[i];
  }
  return pad;
}

/** Deterministic PRNG so a failure reproduces. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe("choosePartition: optimal against brute force", () => {
  it("least padding for each number of parts equals the best set partition (random n <= 8)", () => {
    const r = rng(7);
    for (let trial = 0; trial < 120; trial++) {
      const n = 1 + Math.floor(r() * 8);
      const lengths = Array.from({ length: n }, () => Math.floor(r() * (r() < 0.3 ? 5 : 200)));
      const best = new Array(n + 1).fill(Infinity);
      for (const parts of setPartitions(n)) {
        const k = parts.length;
        best[k] = Math.min(best[k], paddingOf(lengths, parts));
      }
      // With at most k parts (more parts never hurt): running minimum.
      for (let k = 2; k <= n; k++) best[k] = Math.min(best[k], best[k - 1]);
      const dp = minPaddingByParts(lengths, n);
      assert.deepEqual(dp, best.slice(1), `lengths ${lengths}`);
    }
  });

  it("picks the fewest parts within max_sparsity, else the least padding at max_splits", () => {
    const r = rng(11);
    for (let trial = 0; trial < 300; trial++) {
      const n = 1 + Math.floor(r() * 7);
      const lengths = Array.from({ length: n }, () => 1 + Math.floor(r() * 100));
      const maxSparsity = Math.round(r() * 40) / 100;
      const maxSplits = 1 + Math.floor(r() * 4);
      const real = lengths.reduce((a, b) => a + b, 0);
      // Brute force: the least k in 1..maxSplits with some partition of <= k parts within the threshold.
      const bestPad = new Array(n + 1).fill(Infinity);
      for (const parts of setPartitions(n)) {
        bestPad[parts.length] = Math.min(bestPad[parts.length], paddingOf(lengths, parts));
      }
      for (let k = 2; k <= n; k++) bestPad[k] = Math.min(bestPad[k], bestPad[k - 1]);
      const cap = Math.min(maxSplits, n);
      let want = cap;
      for (let k = 1; k <= cap; k++) {
        if (bestPad[k] / (real + bestPad[k]) <= maxSparsity) {
          want = k;
          break;
        }
      }
      const p = choosePartition(lengths, { maxSparsity, maxSplits });
      const what = `lengths ${lengths} sparsity ${maxSparsity} splits ${maxSplits}`;
      assert.equal(p.parts.length, want, what);
      assert.equal(p.padding, bestPad[want], what);
      assert.equal(paddingOf(lengths, p.parts), p.padding, what);
      assert.deepEqual(
        p.parts.flat().sort((a, b) => a - b),
        lengths.map((_, i) => i),
        `every sequence in exactly one part: ${what}`,
      );
    }
  });

  it("rejects bad options and lengths with a message naming them", () => {
    assert.throws(() => choosePartition([3], { maxSparsity: 1.5, maxSplits: 3 }), /max_sparsity/);
    assert.throws(() => choosePartition([3], { maxSparsity: 0.3, maxSplits: 0 }), /max_splits/);
    assert.throws(() => choosePartition([3, -1], { maxSparsity: 0.3, maxSplits: 3 }), /length 1/);
  });

  it("an empty batch has no parts", () => {
    assert.deepEqual(choosePartition([], { maxSparsity: 0.33, maxSplits: 3 }).parts, []);
  });
});
