// Prompt building: random lengths in vLLM's ranges, id prompts that avoid special tokens, text prompts
// that re-encode to their recorded length (with the tiny-kjv tokenizer), and JSONL parsing errors.
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { jsonlDataset, lengthRange, type PromptTokenizer, randomDataset } from "./datasets.ts";
import { BenchError } from "./errors.ts";
import { loadPromptTokenizer } from "./prompt-tokenizer.ts";
import { Rng } from "./random.ts";

const KJV = resolve(import.meta.dirname, "..", "..", "models", "tiny-kjv");
const base = { numPrompts: 50, inputLen: 100, outputLen: 20, tokenizer: null, vocabSize: 1000 };

test("length ranges follow vLLM: [floor(len(1-r)), ceil(len(1+r))], at least 1", () => {
  assert.deepEqual(lengthRange(100, 0, 1), [100, 100]);
  assert.deepEqual(lengthRange(100, 0.25, 1), [75, 125]);
  assert.deepEqual(lengthRange(3, 0.9, 1), [1, 6]); // floor(0.3) = 0 -> 1; ceil(5.7) = 6
});

test("random id prompts: fixed lengths at r=0, ranged lengths within bounds", () => {
  const fixed = randomDataset({ ...base, rangeRatio: 0, promptKind: "ids" }, new Rng(1));
  assert.equal(fixed.length, 50);
  for (const r of fixed) {
    assert.equal((r.prompt as number[]).length, 100);
    assert.equal(r.promptLen, 100);
    assert.equal(r.outputLen, 20);
  }
  const ranged = randomDataset({ ...base, rangeRatio: 0.5, promptKind: "ids" }, new Rng(1));
  const lens = ranged.map((r) => r.promptLen);
  assert.ok(lens.every((l) => l >= 50 && l <= 150));
  assert.ok(new Set(lens).size > 10, "lengths should vary");
  assert.ok(ranged.every((r) => r.outputLen >= 10 && r.outputLen <= 30));
});

test("id prompts are consecutive ids that skip special tokens", () => {
  const tok: PromptTokenizer = {
    vocabSize: 10,
    isSpecial: (id) => id === 0 || id === 5,
    encode: () => [],
    decode: () => "",
  };
  const reqs = randomDataset(
    { ...base, numPrompts: 20, inputLen: 12, tokenizer: tok, rangeRatio: 0, promptKind: "ids" },
    new Rng(9),
  );
  for (const r of reqs) {
    const ids = r.prompt as number[];
    assert.ok(!ids.includes(0) && !ids.includes(5));
    assert.ok(ids.every((id) => id >= 1 && id <= 9));
  }
});

test("text prompts re-encode to exactly the recorded length with the model's tokenizer", () => {
  const tok = loadPromptTokenizer(KJV);
  const reqs = randomDataset(
    { ...base, numPrompts: 10, inputLen: 64, tokenizer: tok, rangeRatio: 0, promptKind: "text" },
    new Rng(5),
  );
  for (const r of reqs) {
    assert.equal(typeof r.prompt, "string");
    assert.equal(tok.encode(r.prompt as string).length, r.promptLen);
  }
  const hits = reqs.filter((r) => r.promptLen === 64).length;
  assert.ok(hits >= 8, `only ${hits}/10 prompts hit the target length`);
});

test("text prompts without a tokenizer are refused, naming --tokenizer", () => {
  assert.throws(
    () => randomDataset({ ...base, rangeRatio: 0, promptKind: "text" }, new Rng(1)),
    (e: unknown) => e instanceof BenchError && e.flag === "--tokenizer",
  );
  assert.throws(
    () => randomDataset({ ...base, vocabSize: null, rangeRatio: 0, promptKind: "ids" }, new Rng(1)),
    (e: unknown) => e instanceof BenchError && /random-vocab-size/.test(e.message),
  );
});

test("jsonl: reads prompts in order, cycles, takes defaults, and names the bad line", () => {
  const dir = mkdtempSync(join(tmpdir(), "bench-ds-"));
  const good = join(dir, "p.jsonl");
  writeFileSync(
    good,
    '{"prompt": "hello there", "output_len": 7, "prompt_len": 3}\n\n{"prompt": [1, 2, 3, 4]}\n',
  );
  const reqs = jsonlDataset({ path: good, numPrompts: 3, defaultOutputLen: 9, tokenizer: null });
  assert.deepEqual(reqs, [
    { prompt: "hello there", promptLen: 3, outputLen: 7 },
    { prompt: [1, 2, 3, 4], promptLen: 4, outputLen: 9 },
    { prompt: "hello there", promptLen: 3, outputLen: 7 },
  ]);
  assert.throws(
    () => jsonlDataset({ path: good, numPrompts: 2, defaultOutputLen: null, tokenizer: null }),
    /p\.jsonl:3: "output_len"/,
  );
  const bad = join(dir, "bad.jsonl");
  writeFileSync(bad, '{"prompt": "a", "output_len": 1, "prompt_len": 1}\n{"prompt": ""}\n');
  assert.throws(
    () => jsonlDataset({ path: bad, numPrompts: 2, defaultOutputLen: 1, tokenizer: null }),
    /bad\.jsonl:2: "prompt" must be/,
  );
  const text = join(dir, "t.jsonl");
  writeFileSync(text, '{"prompt": "In the beginning", "output_len": 2}\n');
  assert.throws(
    () => jsonlDataset({ path: text, numPrompts: 1, defaultOutputLen: null, tokenizer: null }),
    (e: unknown) => e instanceof BenchError && e.flag === "--tokenizer",
  );
  const tok = loadPromptTokenizer(KJV);
  const [r] = jsonlDataset({ path: text, numPrompts: 1, defaultOutputLen: null, tokenizer: tok });
  assert.equal(r.promptLen, tok.encode("In the beginning").length);
  assert.throws(
    () =>
      jsonlDataset({ path: join(dir, "none.jsonl"), numPrompts: 1, defaultOutputLen: 1, tokenizer: null }),
    (e: unknown) => e instanceof BenchError && e.flag === "--dataset-path",
  );
});
