// rolling_batch=scheduler end to end on the trained tiny-kjv model: the padded engine (PaddedScheduler +
// CPU padded runner) gives the same tokens as the paged engine for greedy, seeded sampling and
// contrastive search, with requests arriving mid-flight (prefill, merge, trim), under forced splits, in
// a KV arena so small that admission waits and regions move, and on the worker-thread executor.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { createLlmEngine, type Engine, type EngineOptions } from "../../src/engine/engine.ts";
import type { RequestOutput } from "../../src/engine/protocol.ts";
import { validateParameters } from "../../src/engine/sampling-params.ts";
import { ConfigError } from "../../src/errors.ts";
import { createCpuExecutor, createInThreadCpuExecutor } from "../../src/executor/cpu/index.ts";
import { REPO_ROOT } from "../engine/fixtures.ts";

const MODEL = join(REPO_ROOT, "models", "tiny-kjv");
const quiet = { warn: () => {}, info: () => {} };
const GOLDEN: Array<{ prompt: string; greedy: { ids: number[]; max_new_tokens: number } }> = JSON.parse(
  readFileSync(join(MODEL, "golden.json"), "utf8"),
).cases;

interface Job {
  id: string;
  prompt: string;
  params: Record<string, unknown>;
}

const GREEDY: Job[] = GOLDEN.map((c, i) => ({
  id: `g${i}`,
  prompt: c.prompt,
  params: { max_new_tokens: c.greedy.max_new_tokens },
}));
const MIXED: Job[] = [
  {
    id: "s1",
    prompt: "In the beginning",
    params: { do_sample: true, seed: 7, temperature: 0.8, max_new_tokens: 20 },
  },
  {
    id: "s2",
    prompt: GOLDEN[4].prompt,
    params: { do_sample: true, seed: 99, top_k: 20, top_p: 0.9, max_new_tokens: 24 },
  },
  {
    id: "c1",
    prompt: "The LORD is my shepherd; I shall not want.",
    params: { decoding_strategy: "contrastive", penalty_alpha: 0.6, top_k: 4, max_new_tokens: 16 },
  },
  {
    id: "c2",
    prompt: "And God said",
    params: { decoding_strategy: "contrastive", penalty_alpha: 0.6, top_k: 4, max_new_tokens: 12 },
  },
  { id: "r1", prompt: "And the earth was", params: { repetition_penalty: 1.3, max_new_tokens: 18 } },
  { id: "e1", prompt: "Jesus wept.", params: { max_new_tokens: 40 } },
];

async function engine(padded: boolean, options: EngineOptions = {}, worker = false): Promise<Engine> {
  const opts = { modelDir: MODEL, kvLayout: padded ? ("padded" as const) : undefined };
  return createLlmEngine({
    executor: worker ? createCpuExecutor(opts) : createInThreadCpuExecutor(opts),
    modelDir: MODEL,
    options: { logger: quiet, batching: padded ? "padded" : "paged", ...options },
  });
}

/**
 * Runs the first half of the jobs at once and starts the second half when the first job has streamed
 * three tokens, so new requests prefill while others decode and must be merged in.
 */
async function runStaggered(e: Engine, jobs: Job[]): Promise<Map<string, number[]>> {
  const out = new Map<string, number[]>();
  let release!: () => void;
  const late = new Promise<void>((r) => {
    release = r;
  });
  const half = Math.ceil(jobs.length / 2);
  const one = async (job: Job, i: number) => {
    if (i >= half) await late;
    const ids: number[] = [];
    const params = validateParameters(job.params).params;
    for await (const o of e.generate({ requestId: job.id, prompt: job.prompt, params })) {
      ids.push(...o.tokens.map((t) => t.id));
      if (i === 0 && ids.length >= 3) release();
      if (o.finished) assert.notEqual(o.finishReason, "error", o.error);
    }
    release();
    out.set(job.id, ids);
  };
  await Promise.all(jobs.map(one));
  return out;
}

async function reference(jobs: Job[]): Promise<Map<string, number[]>> {
  const e = await engine(false);
  const r = await runStaggered(e, jobs);
  await e.shutdown();
  return r;
}

describe("padded engine equals the paged engine (tiny-kjv)", () => {
  it("greedy: the transformers goldens, with mid-flight arrivals merged into the running batch", async () => {
    const e = await engine(true);
    const got = await runStaggered(e, GREEDY);
    for (const [i, c] of GOLDEN.entries())
      assert.deepEqual(got.get(`g${i}`), c.greedy.ids, `case ${i}: ${c.prompt}`);
    // Regions of finished rows are released by the step after their last token.
    for (let i = 0; i < 50 && e.stats().kvCacheUsage > 0; i++) await new Promise((r) => setImmediate(r));
    assert.equal(e.stats().kvCacheUsage, 0, "every region freed");
    await e.shutdown();
  });

  it("seeded sampling, contrastive search and penalties, mixed in one batch", async () => {
    const want = await reference(MIXED);
    const e = await engine(true);
    const got = await runStaggered(e, MIXED);
    await e.shutdown();
    for (const j of MIXED) assert.deepEqual(got.get(j.id), want.get(j.id), j.id);
    assert.notDeepEqual(got.get("c2"), GOLDEN[0].greedy.ids.slice(0, 12), "contrastive differs from greedy");
  });

  it("the same under forced splits (max_sparsity 0, max_splits 6) and as one batch (max_sparsity 1)", async () => {
    const jobs = [...GREEDY, ...MIXED];
    const want = await reference(jobs);
    for (const options of [
      { maxSparsity: 0, maxSplits: 6 },
      { maxSparsity: 1, maxSplits: 1 },
    ]) {
      const e = await engine(true, options);
      const got = await runStaggered(e, jobs);
      await e.shutdown();
      for (const j of jobs)
        assert.deepEqual(got.get(j.id), want.get(j.id), `${JSON.stringify(options)} ${j.id}`);
    }
  });

  it("the same in a KV arena that holds only a few requests at once", async () => {
    const jobs = [...GREEDY, ...MIXED];
    const want = await reference(jobs);
    // 160 token slots: the 67-token prompt (+31 to feed) alone takes 98, so requests queue for memory.
    const e = await engine(true, { numBlocks: 160, maxSparsity: 0.1 });
    const got = await runStaggered(e, jobs);
    for (const j of jobs) assert.deepEqual(got.get(j.id), want.get(j.id), j.id);
    assert.equal(e.modelInfo.maxModelLen, 160, "the arena caps the sequence length");
    await e.shutdown();
  });

  it("on the worker-thread executor too", async () => {
    const e = await engine(true, {}, true);
    const got = await runStaggered(e, GREEDY.slice(0, 4));
    await e.shutdown();
    for (const [i, c] of GOLDEN.slice(0, 4).entries())
      assert.deepEqual(got.get(`g${i}`), c.greedy.ids, `case ${i}`);
  });
});

describe("padded engine: option.decoding_strategy", () => {
  it("is the default strategy, do_sample:true overrides it, and contrastive uses penalty_alpha/top_k", async () => {
    const prompt = "And God said";
    const collect = async (e: Engine, id: string, raw: Record<string, unknown>) => {
      const ids: number[] = [];
      const params = e.validateParameters(raw).params;
      for await (const o of e.generate({ requestId: id, prompt, params }))
        ids.push(...o.tokens.map((t) => t.id));
      return ids;
    };
    const paged = await engine(false);
    const contrastive = await collect(paged, "c", { decoding_strategy: "contrastive", max_new_tokens: 10 });
    const sampled = await collect(paged, "s", { do_sample: true, seed: 5, max_new_tokens: 10 });
    const greedy = await collect(paged, "g", { max_new_tokens: 10 });
    await paged.shutdown();
    const e = await engine(true, { defaultStrategy: "contrastive" });
    assert.deepEqual(await collect(e, "d", { max_new_tokens: 10 }), contrastive, "server default");
    assert.deepEqual(await collect(e, "s", { do_sample: true, seed: 5, max_new_tokens: 10 }), sampled);
    assert.deepEqual(await collect(e, "g", { decoding_strategy: "greedy", max_new_tokens: 10 }), greedy);
    assert.notDeepEqual(
      await collect(e, "a", { penalty_alpha: 0.2, top_k: 8, max_new_tokens: 10 }),
      contrastive,
      "penalty_alpha and top_k reach the contrastive look-ahead",
    );
    await e.shutdown();
    assert.notDeepEqual(contrastive, greedy);
  });
});

describe("padded engine: logprobs", () => {
  it("prompt logprobs (decoder_input_details) and top tokens equal the paged engine's", async () => {
    const details = async (e: Engine) => {
      const params = validateParameters({
        max_new_tokens: 5,
        decoder_input_details: true,
        top_n_tokens: 2,
      }).params;
      const outs: RequestOutput[] = [];
      // A second, shorter prompt in the same prefill sub-batch puts left padding next to this row.
      const other = (async () => {
        for await (const o of e.generate({ requestId: "o", prompt: "Amen.", params })) outs.push(o);
      })();
      const mine: RequestOutput[] = [];
      for await (const o of e.generate({ requestId: "d", prompt: GOLDEN[2].prompt, params })) mine.push(o);
      await other;
      return { prefill: mine.at(-1)!.prefill, tokens: mine.flatMap((o) => o.tokens), others: outs.length };
    };
    const paged = await engine(false);
    const want = await details(paged);
    await paged.shutdown();
    const padded = await engine(true, { maxSparsity: 1 });
    const got = await details(padded);
    await padded.shutdown();
    assert.equal(got.prefill!.length, 12);
    assert.equal(got.prefill![0].logprob, null);
    assert.deepEqual(got.prefill, want.prefill);
    assert.deepEqual(got.tokens, want.tokens);
    assert.equal(got.tokens[0].top!.length, 2);
    assert.ok(got.others > 0, "the padded neighbour ran too");
  });
});

describe("padded engine: configuration errors", () => {
  it("rolling_batch=scheduler on a paged executor, and a padded executor without it, fail clearly", async () => {
    const paged = createInThreadCpuExecutor({ modelDir: MODEL });
    await assert.rejects(
      createLlmEngine({ executor: paged, modelDir: MODEL, options: { logger: quiet, batching: "padded" } }),
      (err: unknown) =>
        err instanceof ConfigError && /rolling_batch=scheduler needs an executor/.test(String(err)),
    );
    const padded = createInThreadCpuExecutor({ modelDir: MODEL, kvLayout: "padded" });
    await assert.rejects(
      createLlmEngine({ executor: padded, modelDir: MODEL, options: { logger: quiet } }),
      /runs only padded sub-batches/,
    );
    await assert.rejects(
      engine(true, { maxSparsity: 2 }),
      /option.max_sparsity must be a number in \[0, 1\]/,
    );
  });
});
