// The engine end to end with the real CPU executor and the committed model zoo: greedy output matches
// the transformers goldens (alone, batched, and under preemption with a tiny KV cache), seeded sampling
// is batch-independent, abort frees the request, and a dead worker thread fails requests and recovers.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { createLlmEngine, type Engine, type EngineOptions } from "../../src/engine/engine.ts";
import type { RequestOutput } from "../../src/engine/protocol.ts";
import { validateParameters } from "../../src/engine/sampling-params.ts";
import { EngineDeadError } from "../../src/errors.ts";
import { createCpuExecutor, createInThreadCpuExecutor } from "../../src/executor/cpu/index.ts";
import { REPO_ROOT } from "./fixtures.ts";
import { runGeneration } from "./run-generation.ts";

const ZOO = join(REPO_ROOT, "models", "zoo");
const quiet = { warn: () => {}, info: () => {} };

interface GoldenCase {
  prompt: string;
  input_ids: number[];
  greedy: { max_new_tokens: number; ids: number[]; text: string };
  /** Full-vocabulary log-softmax at a few positions. */
  logsoftmax: LogSoftmax[];
}

function golden(model: string): GoldenCase[] {
  return JSON.parse(readFileSync(join(ZOO, model, "golden.json"), "utf8")).cases;
}

async function engineFor(model: string, options: EngineOptions = {}, kvCacheBytes?: number): Promise<Engine> {
  const modelDir = join(ZOO, model);
  return createLlmEngine({
    executor: createInThreadCpuExecutor({ modelDir, blockSize: 4, kvCacheBytes }),
    modelDir,
    options: { logger: quiet, ...options },
  });
}

describe("engine + CPU executor: greedy matches the transformers goldens", () => {
  for (const model of readdirSync(ZOO).sort()) {
    it(`${model}: every golden case, all in one batch`, async () => {
      const cases = golden(model);
      const engine = await engineFor(model);
      for (const c of cases)
        assert.deepEqual(engine.encode(c.prompt), c.input_ids, `tokenization of ${c.prompt}`);
      const results = await Promise.all(
        cases.map((c, i) =>
          runGeneration(engine, `g${i}`, c.prompt, { max_new_tokens: c.greedy.max_new_tokens }),
        ),
      );
      results.forEach((r, i) => {
        assert.deepEqual(r.ids, cases[i].greedy.ids, `case ${i}: ${cases[i].prompt}`);
        assert.equal(r.last.finishReason, "length");
        // Streamed text equals transformers' one-shot decode, stray U+FFFD from invalid byte runs included.
        assert.equal(r.last.generatedText, cases[i].greedy.text);
        assert.equal(r.outs.map((o) => o.textDelta).join(""), cases[i].greedy.text);
      });
      await engine.shutdown();
    });
  }

  it("llama: the same under preemption (tiny KV cache), chunked prefill and prefix-cache hits", async () => {
    const cases = golden("llama");
    // 28 blocks of 4 tokens (the longest case needs 25 alone), 16 tokens per step: requests must be
    // preempted and recomputed.
    const engine = await engineFor("llama", { numBlocks: 28, maxNumBatchedTokens: 16, maxNumSeqs: 4 });
    const all = [...cases, ...cases];
    const results = await Promise.all(
      all.map((c, i) =>
        runGeneration(engine, `p${i}`, c.prompt, { max_new_tokens: c.greedy.max_new_tokens }),
      ),
    );
    for (const [i, r] of results.entries()) assert.deepEqual(r.ids, all[i].greedy.ids, `request ${i}`);
    const st = engine.stats();
    assert.ok(st.numPreemptions > 0, "the tiny cache must force preemption");
    assert.equal(st.kvCacheUsage, 0);
    // One after the other, the long prompt's freed blocks are still cached: the second run reuses them.
    for (const id of ["again1", "again2"]) {
      const r = await runGeneration(engine, id, cases[4].prompt, { max_new_tokens: 32 });
      assert.deepEqual(r.ids, cases[4].greedy.ids);
    }
    assert.ok(engine.stats().prefixCacheHitRate > 0, "the repeated prompt must hit the prefix cache");
    await engine.shutdown();
  });
});

describe("engine + CPU executor: logprobs", () => {
  it("prompt logprobs (chunked prefill) and token logprobs match the golden log-softmax", async () => {
    const c = golden("llama")[2];
    const ls = c.logsoftmax;
    assert.deepEqual(
      ls.map((x) => x.position),
      [0, 6, 11],
      "two prompt positions and the last one",
    );
    const engine = await engineFor("llama", { maxNumBatchedTokens: 4 });
    const r = await runGeneration(engine, "lp", c.prompt, {
      max_new_tokens: 2,
      decoder_input_details: true,
      top_n_tokens: 3,
    });
    const prefill = r.last.prefill!;
    assert.deepEqual(
      prefill.map((p) => p.id),
      c.input_ids,
    );
    assert.equal(prefill[0].logprob, null);
    for (const { position, values } of ls) {
      if (position + 1 < c.input_ids.length) {
        assertClose(
          prefill[position + 1].logprob!,
          values[c.input_ids[position + 1]],
          `prompt token ${position + 1}`,
        );
      } else {
        const first = r.outs.flatMap((o) => o.tokens)[0];
        assert.equal(first.id, c.greedy.ids[0]);
        assertClose(first.logprob, values[first.id], "first generated token");
        assert.equal(first.top!.length, 3);
        assert.equal(first.top![0].id, first.id, "greedy picks the top alternative");
        const second = [...values].sort((a, b) => b - a)[1];
        assertClose(first.top![1].logprob, second, "second alternative");
      }
    }
    await engine.shutdown();
  });
});

interface LogSoftmax {
  position: number;
  values: number[];
}

function assertClose(actual: number, expected: number, what: string): void {
  assert.ok(Math.abs(actual - expected) < 1e-3, `${what}: ${actual} vs golden ${expected}`);
}

describe("engine + CPU executor: sampling, abort and failure", () => {
  it("a seeded request gives the same tokens alone and in a busy batch", async () => {
    const engine = await engineFor("qwen2");
    const p = { do_sample: true, temperature: 0.9, top_p: 0.95, seed: 1234, max_new_tokens: 20 };
    const solo = await runGeneration(engine, "solo", "In the beginning", p);
    const [batched] = await Promise.all([
      runGeneration(engine, "b", "In the beginning", p),
      runGeneration(engine, "x", "And God said", { do_sample: true, max_new_tokens: 25 }),
      runGeneration(engine, "y", "The LORD is my shepherd", { max_new_tokens: 7 }),
    ]);
    assert.deepEqual(batched.ids, solo.ids);
    assert.equal(batched.last.seed, 1234);
    const other = await runGeneration(engine, "o", "In the beginning", { ...p, seed: 99 });
    assert.notDeepEqual(other.ids, solo.ids);
    await engine.shutdown();
  });

  it("contrastive search is deterministic across batches and preemption, and differs from greedy", async () => {
    const cases = golden("mistral");
    const p = { decoding_strategy: "contrastive", penalty_alpha: 0.6, top_k: 4, max_new_tokens: 16 };
    const roomy = await engineFor("mistral");
    const solo = await runGeneration(roomy, "c", cases[2].prompt, p);
    await roomy.shutdown();
    const tight = await engineFor("mistral", { numBlocks: 14, maxNumBatchedTokens: 8, maxNumSeqs: 3 });
    const batch = await Promise.all(
      cases.slice(0, 4).map((c, i) => runGeneration(tight, `b${i}`, c.prompt, p)),
    );
    assert.ok(tight.stats().numPreemptions > 0, "the tight cache must preempt");
    await tight.shutdown();
    assert.deepEqual(batch[2].ids, solo.ids);
    assert.equal(solo.ids.length, 16);
    assert.notDeepEqual(solo.ids, cases[2].greedy.ids.slice(0, 16));
  });

  it("abort on the worker-thread executor ends the stream and frees the KV blocks", async () => {
    const modelDir = join(ZOO, "llama");
    const engine = await createLlmEngine({
      executor: createCpuExecutor({ modelDir, blockSize: 4 }),
      modelDir,
      options: { logger: quiet },
    });
    const ac = new AbortController();
    const outs: RequestOutput[] = [];
    const params = validateParameters({ max_new_tokens: 500, ignore_eos_token: true }).params;
    for await (const o of engine.generate({ requestId: "a", prompt: "And God said", params }, ac.signal)) {
      outs.push(o);
      if (outs.length === 3) ac.abort();
    }
    assert.equal(outs.at(-1)!.finishReason, "abort");
    const after = await runGeneration(engine, "b", "And God said", { max_new_tokens: 4 });
    assert.deepEqual(after.ids, golden("llama")[0].greedy.ids.slice(0, 4));
    assert.equal(engine.stats().kvCacheUsage, 0);
    await engine.shutdown();
  });

  it("a crashed worker thread fails the in-flight request; attachExecutor brings the engine back", async () => {
    const modelDir = join(ZOO, "llama");
    const first = createCpuExecutor({ modelDir, blockSize: 4 });
    const engine = await createLlmEngine({ executor: first, modelDir, options: { logger: quiet } });
    const params = validateParameters({ max_new_tokens: 500, ignore_eos_token: true }).params;
    const outs: RequestOutput[] = [];
    for await (const o of engine.generate({ requestId: "c", prompt: "And God said", params })) {
      outs.push(o);
      if (outs.length === 2) await first.worker.terminate();
    }
    assert.equal(outs.at(-1)!.finishReason, "error");
    assert.match(outs.at(-1)!.error!, /exited|crashed|died|failed/);
    await assert.rejects(runGeneration(engine, "d", "And God said", { max_new_tokens: 2 }), EngineDeadError);
    await engine.attachExecutor(createCpuExecutor({ modelDir, blockSize: 4 }));
    const again = await runGeneration(engine, "e", "And God said", { max_new_tokens: 4 });
    assert.deepEqual(again.ids, golden("llama")[0].greedy.ids.slice(0, 4));
    await engine.shutdown();
  });
});
