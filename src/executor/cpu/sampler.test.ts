import assert from "node:assert/strict";
import { test } from "node:test";
import { neutralSamplingSettings } from "../testing/sampling-settings.ts";
import type { SamplingSettings } from "../types.ts";
import {
  contrastivePick,
  logSoftmax,
  processLogits,
  sampleToken,
  tokenLogprobs,
  topIndices,
  uniformDraw,
  warpedCandidates,
} from "./sampler.ts";

function settings(o: Partial<SamplingSettings> = {}): SamplingSettings {
  return neutralSamplingSettings({ strategy: "sample", seed: 7, ...o });
}

const LOGITS = Float64Array.from([2.0, 1.0, 0.5, 0.0, -1.0, -3.0]);

/** Empirical distribution of 4000 seeded draws (seed varies; n fixed). */
function histogram(s: Partial<SamplingSettings>, logits = LOGITS, draws = 4000): number[] {
  const h = new Array(logits.length).fill(0);
  for (let i = 0; i < draws; i++) h[sampleToken(logits, settings({ ...s, seed: 1000 + i }), 0)]++;
  return h.map((c) => c / draws);
}

function softmax(l: ArrayLike<number>, t = 1): number[] {
  const e = Array.from(l, (v) => Math.exp(v / t));
  const z = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / z);
}

test("uniformDraw is splitmix64 of (seed, n): values match a Python reference", () => {
  assert.equal(uniformDraw(42, 0), 0.7415648787718233);
  assert.equal(uniformDraw(42, 1), 0.1599103928769201);
  assert.equal(uniformDraw(0, 0), 0.8833108082136426);
  assert.equal(uniformDraw(-7, 3), 0.15940421119544657);
});

test("the same seed reproduces a sample sequence; another seed changes it", () => {
  const seq = (seed: number) =>
    Array.from({ length: 40 }, (_, n) => sampleToken(LOGITS, settings({ seed }), n));
  assert.deepEqual(seq(5), seq(5));
  assert.notDeepEqual(seq(5), seq(6));
});

test("plain sampling follows softmax(logits) (chi-square, fixed seeds)", () => {
  const p = softmax(LOGITS);
  const h = histogram({});
  const chi = p.reduce((a, pi, i) => a + ((h[i] - pi) * 4000) ** 2 / (pi * 4000), 0);
  assert.ok(chi < 20.5, `chi-square ${chi} (5 dof, p=0.001 critical 20.5)`);
});

test("temperature sharpens below 1 and flattens above 1", () => {
  const cold = histogram({ temperature: 0.3 });
  const base = histogram({});
  const hot = histogram({ temperature: 3 });
  assert.ok(cold[0] > base[0] + 0.1 && base[0] > hot[0] + 0.1, `${cold[0]} ${base[0]} ${hot[0]}`);
  assert.ok(Math.abs(hot[0] - softmax(LOGITS, 3)[0]) < 0.03);
});

test("top-k keeps only the k most likely tokens, renormalised", () => {
  const h = histogram({ topK: 2 });
  assert.equal(h[2] + h[3] + h[4] + h[5], 0);
  const p = softmax([2, 1]);
  assert.ok(Math.abs(h[0] - p[0]) < 0.03);
});

test("top-p keeps the smallest nucleus reaching p (HF semantics)", () => {
  const p = softmax(LOGITS); // ≈ [.574, .211, .128, .078, .029, .004]
  assert.deepEqual(
    warpedCandidates(LOGITS, settings({ topP: 0.7 })).cands.map((c) => c.id),
    [0, 1],
  );
  assert.deepEqual(
    warpedCandidates(LOGITS, settings({ topP: p[0] + 1e-6 })).cands.map((c) => c.id),
    [0, 1],
  );
  assert.deepEqual(
    warpedCandidates(LOGITS, settings({ topP: 0.5 })).cands.map((c) => c.id),
    [0],
  );
  const h = histogram({ topP: 0.85 });
  assert.equal(h[3] + h[4] + h[5], 0);
  assert.ok(h[2] > 0.05);
});

test("min-p drops tokens below min_p times the top probability", () => {
  // p1/p0 = e^-1 = .37, p2/p0 = e^-1.5 = .22
  assert.deepEqual(
    warpedCandidates(LOGITS, settings({ minP: 0.3 })).cands.map((c) => c.id),
    [0, 1],
  );
});

test("typical-p keeps tokens whose surprise is closest to the entropy until the mass is reached", () => {
  const p = softmax(LOGITS);
  const ent = -p.reduce((a, q) => a + q * Math.log(q), 0);
  const order = p.map((q, i) => [Math.abs(-Math.log(q) - ent), i]).sort((a, b) => a[0] - b[0]);
  const first = order[0][1];
  const kept = warpedCandidates(LOGITS, settings({ typicalP: 0.2 })).cands.map((c) => c.id);
  assert.deepEqual(kept, [first]);
  assert.ok(warpedCandidates(LOGITS, settings({ typicalP: 0.9 })).cands.length >= 3);
});

test("greedy takes the argmax after penalties", () => {
  assert.equal(sampleToken(LOGITS, settings({ strategy: "greedy" }), 0), 0);
  const pen = processLogits(LOGITS, settings({ logitBias: { 3: 5 } }), [], 0);
  assert.equal(sampleToken(pen, settings({ strategy: "greedy" }), 0), 3);
});

test("repetition penalty divides positive and multiplies negative logits of seen tokens", () => {
  const l = processLogits(LOGITS, settings({ repetitionPenalty: 2 }), [0, 4, 0], 1);
  assert.deepEqual(Array.from(l), [1, 1, 0.5, 0, -2, -3]);
});

test("presence/frequency penalties count generated tokens only", () => {
  // prompt = [1], generated = [2, 2, 3]
  const l = processLogits(
    LOGITS,
    settings({ presencePenalty: 0.5, frequencyPenalty: 0.25 }),
    [1, 2, 2, 3],
    1,
  );
  assert.deepEqual(Array.from(l), [2, 1, 0.5 - 0.5 - 0.5, 0 - 0.5 - 0.25, -1, -3]);
});

test("minTokens masks eos until enough tokens are generated", () => {
  const s = settings({ minTokens: 2, eosTokenIds: [0, 5] });
  const early = processLogits(LOGITS, s, [9, 1], 1);
  assert.equal(early[0], -Infinity);
  assert.equal(early[5], -Infinity);
  const late = processLogits(LOGITS, s, [9, 1, 1], 1);
  assert.equal(late[0], 2);
  assert.equal(sampleToken(early, settings({ strategy: "greedy" }), 1), 1);
});

test("logprobs come from the raw logits' log_softmax, with ranked alternatives", () => {
  const lsm = logSoftmax(LOGITS);
  const lp = tokenLogprobs(lsm, 2, 3);
  assert.ok(Math.abs(lp.logprob - Math.log(softmax(LOGITS)[2])) < 1e-12);
  assert.deepEqual(
    lp.top.map(([i]) => i),
    [0, 1, 2],
  );
  assert.deepEqual(topIndices([1, 3, 3, 2], 3), [1, 2, 3]);
});

test("contrastive search trades probability against similarity to the context", () => {
  const ctx = [Float32Array.from([1, 0])];
  const candHidden = [Float32Array.from([1, 0.01]), Float32Array.from([0, 1])];
  // alpha 0: pure probability -> candidate 10; alpha 0.6: the dissimilar candidate 20 wins.
  assert.equal(contrastivePick([10, 20], [0.6, 0.4], candHidden, ctx, 0), 10);
  assert.equal(contrastivePick([10, 20], [0.6, 0.4], candHidden, ctx, 0.6), 20);
});
