// The executor conformance suite, shared by every executor (CPU now, GPU later): for each committed
// model the executor supports, logprobs agree with the transformers goldens within the stated tolerance and
// greedy continuations are token-exact, alone and batched (chunked prefill, a prefix-cache hit,
// preemption and resume). Everything goes through the public Executor API with hand-built plans.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Executor, TokenLogprobs } from "../../src/executor/types.ts";
import { type GoldenCase, listModels, type ModelEntry } from "./golden.ts";
import { PlanDriver, samplingSettings } from "./plan-driver.ts";

/**
 * Default stated tolerance: absolute difference of log-probabilities (and of logit gaps to the top
 * logit) between the executor and transformers' fp32 reference. Executors state their own (logprobTol).
 */
export const DEFAULT_tol = 1e-3;

export interface ExecutorUnderTest {
  /** Names the suite, e.g. "cpu". */
  name: string;
  supports(config: Record<string, unknown>): boolean;
  create(modelDir: string): Promise<Executor>;
  /** Optional deeper check: full-vocabulary logits of every position of `ids`. */
  fullLogits?(modelDir: string, ids: number[]): Promise<Float32Array[]>;
  /** Tokens per step for the batched test; small values force chunked prefill. */
  tokenBudget?: number;
  /** Tolerance on logprobs and on raw logits (fullLogits); default DEFAULT_tol. */
  logprobTol?: number;
}

function logSoftmax(l: Float32Array): Float64Array {
  let m = -Infinity;
  for (const v of l) m = Math.max(m, v);
  let s = 0;
  for (const v of l) s += Math.exp(v - m);
  const lse = m + Math.log(s);
  return Float64Array.from(l, (v) => v - lse);
}

/** Our top-k values against the golden's sorted values: robust to near-tie swaps of ids. */
function checkTop(
  ours: TokenLogprobs,
  goldIds: number[],
  goldVals: number[],
  what: string,
  tol: number,
): void {
  assert.equal(ours.top[0][0], goldIds[0], `${what}: top-1 id`);
  const n = Math.min(ours.top.length, goldVals.length);
  for (let k = 0; k < n; k++) {
    const d = ours.top[k][1] - ours.top[0][1] - (goldVals[k] - goldVals[0]);
    assert.ok(Math.abs(d) <= tol, `${what}: rank ${k} gap differs by ${d}`);
    const gapBefore = k > 0 ? goldVals[k - 1] - goldVals[k] : Infinity;
    const gapAfter = k + 1 < goldVals.length ? goldVals[k] - goldVals[k + 1] : Infinity;
    if (gapBefore > tol && gapAfter > tol) assert.equal(ours.top[k][0], goldIds[k], `${what}: rank ${k} id`);
  }
}

function sortedTop(values: number[], k: number): { ids: number[]; vals: number[] } {
  const ids = values
    .map((_, i) => i)
    .sort((a, b) => values[b] - values[a] || a - b)
    .slice(0, k);
  return { ids, vals: ids.map((i) => values[i]) };
}

async function withDriver(ex: Executor, budget?: number): Promise<PlanDriver> {
  const prof = await ex.profile();
  return new PlanDriver(ex, prof.blockSize, prof.numBlocks, budget);
}

function checkLogprobs(
  c: GoldenCase,
  promptLps: Array<TokenLogprobs | null>,
  first: TokenLogprobs,
  label: string,
  tol: number,
) {
  checkTop(first, c.last_top20.ids, c.last_top20.logits, `${label} last position`, tol);
  for (const { position, values } of c.logsoftmax) {
    const ours = position + 1 < c.input_ids.length ? promptLps[position + 1] : first;
    assert.ok(ours, `${label}: no logprobs for position ${position}`);
    const target = position + 1 < c.input_ids.length ? c.input_ids[position + 1] : c.greedy.ids[0];
    const d = ours.logprob - values[target];
    assert.ok(Math.abs(d) <= tol, `${label} position ${position}: chosen logprob off by ${d}`);
    const top = sortedTop(values, ours.top.length);
    checkTop(ours, top.ids, top.vals, `${label} position ${position}`, tol);
    for (const [id, lp] of ours.top) {
      assert.ok(Math.abs(lp - values[id]) <= tol, `${label} position ${position}: logprob of ${id}`);
    }
  }
}

function suiteFor(ut: ExecutorUnderTest, m: ModelEntry): void {
  const golden = m.golden!;
  const tol = ut.logprobTol ?? DEFAULT_tol;
  let ex: Executor;
  // Greedy goldens come from HF generate, which stops at eos: so do these requests.
  let greedy = samplingSettings();
  before(async () => {
    ex = await ut.create(m.dir);
    const info = await ex.load();
    greedy = samplingSettings({ eosTokenIds: info.eosTokenIds, ignoreEos: false });
    await ex.initCache((await ex.profile()).numBlocks);
  });
  after(async () => {
    await ex?.shutdown();
  });

  it("logprobs of prompt positions and the last position match the golden", async () => {
    const d = await withDriver(ex);
    golden.cases.forEach((c, i) => {
      d.add(`lp${i}`, c.input_ids, samplingSettings({ numTopLogprobs: 20, promptLogprobs: true }), 1);
    });
    await d.runToCompletion();
    golden.cases.forEach((c, i) => {
      const r = d.reqs.get(`lp${i}`)!;
      assert.equal(
        r.promptLogprobs.length,
        c.input_ids.length,
        `case ${i}: one prompt entry per prompt token`,
      );
      checkLogprobs(
        c,
        r.promptLogprobs,
        r.logprobs[0],
        `case ${i} (${JSON.stringify(c.prompt.slice(0, 20))})`,
        tol,
      );
    });
  });

  if (ut.fullLogits) {
    const full = ut.fullLogits;
    it("full-vocabulary log_softmax and last-position raw logits are within tolerance", async () => {
      for (const [i, c] of golden.cases.entries()) {
        const logits = await full(m.dir, c.input_ids);
        const last = logits[c.input_ids.length - 1];
        c.last_top20.ids.forEach((id, k) => {
          const d = last[id] - c.last_top20.logits[k];
          assert.ok(Math.abs(d) <= tol, `case ${i}: raw logit of ${id} off by ${d}`);
        });
        for (const { position, values } of c.logsoftmax) {
          const ours = logSoftmax(logits[position]);
          let worst = 0;
          for (let v = 0; v < values.length; v++) worst = Math.max(worst, Math.abs(ours[v] - values[v]));
          assert.ok(worst <= tol, `case ${i} position ${position}: max |Δ logprob| ${worst}`);
        }
      }
    });
  }

  it("greedy continuations are token-exact, one request at a time", async () => {
    for (const [i, c] of golden.cases.entries()) {
      const d = await withDriver(ex);
      d.add(`g${i}`, c.input_ids, greedy, c.greedy.max_new_tokens);
      await d.runToCompletion();
      assert.deepEqual(d.reqs.get(`g${i}`)!.generated, c.greedy.ids, `case ${i}`);
    }
  });

  it("greedy continuations are token-exact batched: chunked prefill, prefix hit, preemption", async () => {
    const d = await withDriver(ex, ut.tokenBudget ?? 16);
    const bs = d.blockSize;
    golden.cases.forEach((c, i) => {
      d.add(`b${i}`, c.input_ids, greedy, c.greedy.max_new_tokens);
    });
    // Let the longest case compute a few full blocks, then start a request that shares them.
    const longest = golden.cases.reduce(
      (a, c, i) => (c.input_ids.length > golden.cases[a].input_ids.length ? i : a),
      0,
    );
    const src = d.reqs.get(`b${longest}`)!;
    const lc = golden.cases[longest];
    let steps = 0;
    while (src.numComputed < bs + 1 && steps++ < 100) await d.step();
    const k = Math.min(5, lc.greedy.ids.length - 1);
    const hitPrompt = [...lc.input_ids, ...lc.greedy.ids.slice(0, k)];
    const shared = Math.floor(Math.min(src.numComputed, hitPrompt.length - 1) / bs) * bs;
    assert.ok(shared > 0, "the prefix hit must reuse at least one block");
    d.add("hit", hitPrompt, greedy, lc.greedy.max_new_tokens - k, {
      fromReqId: `b${longest}`,
      numTokens: shared,
    });
    await d.step();
    await d.step();
    const victim = `b${(longest + 1) % golden.cases.length}`;
    if (!d.reqs.get(victim)!.done) d.preempt(victim);
    await d.runToCompletion();
    golden.cases.forEach((c, i) => {
      assert.deepEqual(d.reqs.get(`b${i}`)!.generated, c.greedy.ids, `case ${i} batched`);
    });
    assert.deepEqual(d.reqs.get("hit")!.generated, lc.greedy.ids.slice(k), "prefix-hit request");
  });
}

/** Registers the suite for every committed model; unsupported or absent models skip with a reason. */
export function defineExecutorConformance(ut: ExecutorUnderTest): void {
  describe(`executor conformance: ${ut.name} (logprob tolerance ${ut.logprobTol ?? DEFAULT_tol})`, () => {
    for (const m of listModels()) {
      if (m.missing) {
        it(`${m.name}`, { skip: m.missing }, () => {});
        continue;
      }
      if (!ut.supports(m.config!)) {
        const arch = (m.config!.architectures as string[] | undefined)?.[0] ?? "(none)";
        it(`${m.name}`, { skip: `${ut.name} executor does not support ${arch}` }, () => {});
        continue;
      }
      describe(m.name, () => suiteFor(ut, m));
    }
  });
}
