import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { PlanDriver, samplingSettings } from "../../../test/conformance/plan-driver.ts";
import type { SamplingSettings } from "../types.ts";
import { InThreadCpuExecutor } from "./in-thread-executor.ts";
import { logSoftmax, processLogits, topIndices } from "./sampler.ts";
import { writeRandomModel } from "./testing/random-model.ts";
import { referenceForward } from "./testing/reference-forward.ts";

const BS = 4;
const dir = writeRandomModel(mkdtempSync(join(tmpdir(), "runner-")), {
  family: "qwen2",
  vocab: 61,
  layers: 2,
});

async function executor(): Promise<InThreadCpuExecutor> {
  const ex = new InThreadCpuExecutor({ modelDir: dir, blockSize: BS, maxGroupTokens: 8 });
  await ex.load();
  await ex.initCache(64);
  return ex;
}

const P1 = [5, 9, 13, 2, 40, 41, 7, 3, 22, 8];
const P2 = [30, 31, 32];
const P3 = [5, 9, 13, 2, 40, 41, 7, 3, 50, 51, 52];

function refGreedy(ex: InThreadCpuExecutor, prompt: number[], n: number): number[] {
  const m = (ex.runner as unknown as { model: { spec: never; weights: never } }).model;
  const toks = [...prompt];
  for (let i = 0; i < n; i++) {
    const l = referenceForward(m.spec, m.weights, toks).logits;
    toks.push(topIndices(l[l.length - 1], 1)[0]);
  }
  return toks.slice(prompt.length);
}

test("greedy output equals the reference, alone, batched, chunked, with a prefix hit and after preemption", async () => {
  const ex = await executor();
  const want1 = refGreedy(ex, P1, 8);
  const want2 = refGreedy(ex, P2, 8);
  const want3 = refGreedy(ex, P3, 8);

  const alone = new PlanDriver(ex, BS, 64);
  alone.add("a", P1, samplingSettings(), 8);
  await alone.runToCompletion();
  assert.deepEqual(alone.reqs.get("a")!.generated, want1);

  // Batched, with a 5-token budget so prompts prefill in chunks across steps.
  const batched = new PlanDriver(ex, BS, 64, 5);
  batched.add("a", P1, samplingSettings(), 8);
  batched.add("b", P2, samplingSettings(), 8);
  await batched.step();
  await batched.step();
  await batched.step();
  // c reuses the 2 full blocks a computed (8 tokens) and computes only its tail.
  batched.add("c", P3, samplingSettings(), 8, { fromReqId: "a", numTokens: 8 });
  await batched.step();
  batched.preempt("b");
  await batched.runToCompletion();
  assert.deepEqual(batched.reqs.get("a")!.generated, want1);
  assert.deepEqual(batched.reqs.get("b")!.generated, want2);
  assert.deepEqual(batched.reqs.get("c")!.generated, want3);
});

test("logprobs and prompt logprobs are the raw log_softmax of the reference logits", async () => {
  const ex = await executor();
  const m = (ex.runner as unknown as { model: { spec: never; weights: never } }).model;
  const d = new PlanDriver(ex, BS, 64, 4);
  d.add("a", P1, samplingSettings({ numTopLogprobs: 3, promptLogprobs: true, repetitionPenalty: 1.3 }), 3);
  await d.runToCompletion();
  const r = d.reqs.get("a")!;
  const logits = referenceForward(m.spec, m.weights, r.tokenIds).logits;
  assert.equal(r.promptLogprobs.length, P1.length);
  assert.equal(r.promptLogprobs[0], null);
  for (let i = 1; i < P1.length; i++) {
    const lsm = logSoftmax(logits[i - 1]);
    assert.ok(Math.abs(r.promptLogprobs[i]!.logprob - lsm[P1[i]]) < 1e-4, `prompt pos ${i}`);
    assert.deepEqual(
      r.promptLogprobs[i]!.top.map(([t]) => t),
      topIndices(lsm, 3),
    );
  }
  for (let g = 0; g < 3; g++) {
    const lsm = logSoftmax(logits[P1.length - 1 + g]);
    assert.ok(Math.abs(r.logprobs[g].logprob - lsm[r.generated[g]]) < 1e-4);
    assert.equal(r.logprobs[g].top.length, 3);
  }
  // The penalty steered the choice, but logprobs stay raw: the chosen token's logprob is the model's.
  const processed = processLogits(logits[P1.length - 1], r.sampling, P1, P1.length);
  assert.equal(r.generated[0], topIndices(processed, 1)[0]);
});

test("a seeded sampled request gives the same tokens alone and batched", async () => {
  const ex = await executor();
  const s: SamplingSettings = samplingSettings({ strategy: "sample", temperature: 1.5, seed: 99 });
  const alone = new PlanDriver(ex, BS, 64);
  alone.add("s", P2, s, 12);
  await alone.runToCompletion();
  const batched = new PlanDriver(ex, BS, 64, 6);
  batched.add("x", P1, samplingSettings({ strategy: "sample", seed: 1 }), 12);
  batched.add("s", P2, s, 12);
  await batched.runToCompletion();
  assert.deepEqual(batched.reqs.get("s")!.generated, alone.reqs.get("s")!.generated);
  const other = new PlanDriver(ex, BS, 64);
  other.add("s", P2, { ...s, seed: 100 }, 12);
  await other.runToCompletion();
  assert.notDeepEqual(other.reqs.get("s")!.generated, alone.reqs.get("s")!.generated);
});

test("contrastive search matches a brute-force HF-style reference and leaves other requests intact", async () => {
  const ex = await executor();
  const m = (ex.runner as unknown as { model: { spec: never; weights: never } }).model;
  const s = samplingSettings({ strategy: "contrastive", topK: 4, penaltyAlpha: 0.6 });
  const toks = [...P3];
  for (let step = 0; step < 6; step++) {
    const { logits, hidden } = referenceForward(m.spec, m.weights, toks);
    const processed = processLogits(logits[logits.length - 1], s, toks, P3.length);
    const lsm = logSoftmax(processed);
    const cands = topIndices(processed, 4);
    let best = -1;
    let bestScore = -Infinity;
    for (const c of cands) {
      const h = referenceForward(m.spec, m.weights, [...toks, c]).hidden.at(-1)!;
      let maxSim = -Infinity;
      for (const ctx of hidden) {
        let dot = 0;
        let na = 0;
        let nb = 0;
        for (let i = 0; i < h.length; i++) {
          dot += h[i] * ctx[i];
          na += h[i] * h[i];
          nb += ctx[i] * ctx[i];
        }
        maxSim = Math.max(maxSim, dot / Math.sqrt(na * nb));
      }
      const score = 0.4 * Math.exp(lsm[c]) - 0.6 * maxSim;
      if (score > bestScore) {
        bestScore = score;
        best = c;
      }
    }
    toks.push(best);
  }
  const d = new PlanDriver(ex, BS, 64, 7);
  d.add("g", P1, samplingSettings(), 6);
  d.add("c", P3, s, 6);
  await d.runToCompletion();
  assert.deepEqual(d.reqs.get("c")!.generated, toks.slice(P3.length));
  assert.deepEqual(d.reqs.get("g")!.generated, refGreedy(ex, P1, 6));
});

test("a contrastive request whose step starts past its kept hidden states is refused by name", async () => {
  const ex = await executor();
  const plan = {
    stepId: 0,
    scheduledNewReqs: [
      {
        reqId: "c",
        promptTokenIds: P3,
        sampling: samplingSettings({ strategy: "contrastive", topK: 4, penaltyAlpha: 0.6 }),
        blockIds: [0, 1, 2],
        numComputedTokens: 8, // as if a prefix-cache hit had covered two blocks
      },
    ],
    scheduledCachedReqs: [],
    numScheduledTokens: { c: 3 },
    totalNumScheduledTokens: 3,
    finishedReqIds: [],
    preemptedReqIds: [],
  };
  await assert.rejects(
    ex.execute(plan),
    /request c: contrastive search needs the hidden state of every position.*position 8.*reach 0/,
  );
});

test("errors name the problem: unknown request, too many tokens, no cache", async () => {
  const ex = new InThreadCpuExecutor({ modelDir: dir, blockSize: BS });
  await ex.load();
  const plan = {
    stepId: 0,
    scheduledNewReqs: [],
    scheduledCachedReqs: [],
    numScheduledTokens: { nope: 1 },
    totalNumScheduledTokens: 1,
    finishedReqIds: [],
    preemptedReqIds: [],
  };
  await assert.rejects(ex.execute(plan), /initCache/);
  await ex.initCache(8);
  await assert.rejects(ex.execute(plan), /unknown to the executor/);
  const prof = await ex.profile();
  assert.equal(prof.blockSize, BS);
  assert.equal(prof.bytesPerBlock, 2 * 2 * BS * 2 * 8 * 4);
  assert.equal(prof.numBlocks, Math.floor((256 * 1024 * 1024) / prof.bytesPerBlock));
});
