import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import type { SeqWork } from "./forward.ts";
import { createForward, type LoadedModel, loadModel } from "./model.ts";
import { type RandomFamily, writeRandomModel } from "./testing/random-model.ts";
import { referenceLogits } from "./testing/reference-forward.ts";

const FAMILIES: RandomFamily[] = [
  "llama",
  "mistral",
  "qwen2",
  "qwen3",
  "phi3",
  "gpt2",
  "gpt_neox",
  "mixtral",
];
const BS = 4;

function maxDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function model(family: RandomFamily, backend: "ts" | "wasm", extra = {}): LoadedModel {
  const dir = writeRandomModel(mkdtempSync(join(tmpdir(), `rm-${family}-`)), { family, ...extra });
  return loadModel(dir, { backend, maxGroupTokens: 8 });
}

const seqA = [3, 17, 42, 5, 9, 60, 2, 33, 71, 8, 11];
const seqB = [50, 4, 4, 90, 13, 27, 6];

for (const family of FAMILIES) {
  test(`${family}: paged, batched, chunked forward equals the contiguous reference`, () => {
    for (const backend of ["ts", "wasm"] as const) {
      const m = model(family, backend, family === "mistral" ? { slidingWindow: 5 } : {});
      const refA = referenceLogits(m.spec, m.weights, seqA);
      const refB = referenceLogits(m.spec, m.weights, seqB);
      const fwd = createForward(m, 16, BS, 0, 8);
      // Non-contiguous, out-of-order block tables so a slot-mapping bug changes the result.
      const tableA = [9, 2, 14];
      const tableB = [5, 0];
      // Step 1: A's first 6 tokens (chunked prefill) batched with all of B.
      const r1 = fwd.forward([
        { tokens: seqA.slice(0, 6), startPos: 0, blockTable: tableA, logits: "all", hidden: false },
        { tokens: seqB, startPos: 0, blockTable: tableB, logits: "last", hidden: false },
      ] satisfies SeqWork[]);
      assert.equal(r1[0].logits.length, 6);
      assert.equal(r1[1].logits.length, 1);
      for (let p = 0; p < 6; p++)
        assert.ok(maxDiff(r1[0].logits[p], refA[p]) < 1e-4, `${backend} A pos ${p}`);
      assert.ok(maxDiff(r1[1].logits[0], refB[seqB.length - 1]) < 1e-4, `${backend} B last`);
      // Step 2: the rest of A, attending over the blocks step 1 filled.
      const r2 = fwd.forward([
        { tokens: seqA.slice(6), startPos: 6, blockTable: tableA, logits: "last", hidden: false },
      ]);
      assert.ok(maxDiff(r2[0].logits[0], refA[seqA.length - 1]) < 1e-4, `${backend} A last after chunk`);
    }
  });
}

test("the sliding window changes logits once the sequence outgrows it", () => {
  const full = model("mistral", "ts");
  const windowed = model("mistral", "ts", { slidingWindow: 3 });
  const a = referenceLogits(full.spec, full.weights, seqA);
  const b = referenceLogits(windowed.spec, windowed.weights, seqA);
  assert.ok(maxDiff(a[2], b[2]) < 1e-6);
  assert.ok(maxDiff(a[8], b[8]) > 1e-3);
});
