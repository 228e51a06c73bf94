// The engine's async step loop with the ToyExecutor (a complete executor over a toy model that reads
// its context back from paged KV): streaming, batch invariance, preemption, prefix caching, aborts,
// admission errors and executor failure/recovery.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createLlmEngine, type Engine, type EngineOptions } from "../../src/engine/engine.ts";
import type { RequestOutput } from "../../src/engine/protocol.ts";
import { validateParameters } from "../../src/engine/sampling-params.ts";
import { EngineDeadError, OverloadedError, PromptTooLongError, ValidationError } from "../../src/errors.ts";
import type { SchedulerOutput } from "../../src/executor/types.ts";
import { BYTE_BPE_DIR, byteBpe } from "./fixtures.ts";
import { ToyExecutor, type ToyExecutorOptions } from "./toy-executor.ts";

const quiet = { warn: () => {}, info: () => {} };

async function engineWith(
  toy: ToyExecutorOptions = {},
  options: EngineOptions = {},
): Promise<{ engine: Engine; exec: ToyExecutor }> {
  const exec = new ToyExecutor(toy);
  const engine = await createLlmEngine({
    executor: exec,
    modelDir: BYTE_BPE_DIR,
    tokenizer: byteBpe(),
    options: { logger: quiet, ...options },
  });
  return { engine, exec };
}

function req(id: string, prompt: string, raw: Record<string, unknown> = {}) {
  return { requestId: id, prompt, params: validateParameters(raw).params };
}

async function collect(it: AsyncIterable<RequestOutput>): Promise<RequestOutput[]> {
  const outs: RequestOutput[] = [];
  for await (const o of it) outs.push(o);
  return outs;
}

async function textOf(engine: Engine, id: string, prompt: string, raw: Record<string, unknown> = {}) {
  const outs = await collect(engine.generate(req(id, prompt, raw)));
  const last = outs.at(-1)!;
  return { text: last.generatedText!, ids: outs.flatMap((o) => o.tokens.map((t) => t.id)), last, outs };
}

const PROMPTS = [
  "Hello the world",
  "and the world and the world and the world",
  "é 😀",
  "Hello",
  "the the the the the the the the the the the the the",
];

describe("Engine generate", () => {
  it("streams deltas that add up to the final text and stops at max_new_tokens", async () => {
    const { engine } = await engineWith();
    const { outs, last, ids } = await textOf(engine, "a", "Hello the world", { max_new_tokens: 12 });
    assert.equal(last.finished, true);
    assert.equal(last.finishReason, "length");
    assert.equal(last.numGeneratedTokens, 12);
    assert.equal(ids.length, 12);
    assert.equal(outs.map((o) => o.textDelta).join(""), last.generatedText);
    assert.equal(last.generatedText, engine.decode(ids));
    assert.match(last.generatedText!, /^[a-z]{12}$/);
    assert.equal(last.numPromptTokens, engine.encode("Hello the world").length);
    assert.equal(typeof last.seed, "number", "a seed is drawn when the user gives none");
    await engine.shutdown();
  });

  it("gives every request the same tokens alone, batched, preempted and from the prefix cache", async () => {
    const params = (i: number) => ({
      max_new_tokens: 20,
      ...(i % 2 ? { do_sample: true, seed: 100 + i } : {}),
    });
    const alone: string[] = [];
    {
      const { engine } = await engineWith({ numBlocks: 256 });
      for (let i = 0; i < PROMPTS.length; i++)
        alone.push((await textOf(engine, `r${i}`, PROMPTS[i], params(i))).text);
      await engine.shutdown();
    }
    // Tiny KV (12 blocks of 4) and a small token budget: chunked prefill, preemption and prefix hits.
    const { engine, exec } = await engineWith({ numBlocks: 12 }, { maxNumBatchedTokens: 8, maxNumSeqs: 4 });
    const runs = [...PROMPTS, ...PROMPTS].map((p, j) =>
      textOf(engine, `b${j}`, p, params(j % PROMPTS.length)),
    );
    const batched = (await Promise.all(runs)).map((r) => r.text);
    assert.deepEqual(batched, [...alone, ...alone]);
    const st = engine.stats();
    assert.ok(st.numPreemptions > 0, "the tiny cache must force preemption");
    assert.ok(exec.plans.some((p) => p.scheduledCachedReqs.some((r) => r.resumedFromPreemption)));
    assert.equal(st.numRunning + st.numWaiting, 0);
    await engine.shutdown();
    // Roomy cache, two at a time: the repeats arrive after their twins' prompts are cached.
    const roomy = await engineWith({ numBlocks: 256 }, { maxNumSeqs: 2 });
    const repeats = [...PROMPTS, ...PROMPTS].map((p, j) =>
      textOf(roomy.engine, `c${j}`, p, params(j % PROMPTS.length)),
    );
    assert.deepEqual(
      (await Promise.all(repeats)).map((r) => r.text),
      [...alone, ...alone],
    );
    assert.ok(roomy.engine.stats().prefixCacheHitRate > 0, "repeated prompts must hit the prefix cache");
    assert.ok(roomy.exec.plans.some((p) => p.scheduledNewReqs.some((r) => r.numComputedTokens > 0)));
    await roomy.engine.shutdown();
  });

  it("gives the same tokens with prompts run first (enable_chunked_prefill=false), preempted or not", async () => {
    const params = (i: number) => ({
      max_new_tokens: 20,
      ...(i % 2 ? { do_sample: true, seed: 100 + i } : {}),
    });
    const mixed = await engineWith({ numBlocks: 256 });
    const alone: string[] = [];
    for (let i = 0; i < PROMPTS.length; i++)
      alone.push((await textOf(mixed.engine, `r${i}`, PROMPTS[i], params(i))).text);
    await mixed.engine.shutdown();
    for (const numBlocks of [256, 12]) {
      const { engine, exec } = await engineWith(
        { numBlocks },
        { maxNumBatchedTokens: 8, maxNumSeqs: 4, enableChunkedPrefill: false },
      );
      const runs = [...PROMPTS, ...PROMPTS].map((p, j) =>
        textOf(engine, `b${j}`, p, params(j % PROMPTS.length)),
      );
      assert.deepEqual(
        (await Promise.all(runs)).map((r) => r.text),
        [...alone, ...alone],
      );
      if (numBlocks === 256) {
        // No step carries both prompt tokens and a decode row: a request computing one token at the end of its
        // prompt or past it (a prompt's last token is a decode row's work, so the scheduler treats it as one).
        const promptLen = (id: string) => engine.encode(PROMPTS[Number(id.slice(1)) % PROMPTS.length]).length;
        for (const plan of exec.plans) {
          const decodes = plan.scheduledCachedReqs.filter(
            (r) => r.numComputedTokens >= promptLen(r.reqId) - 1,
          );
          const prompts = plan.scheduledNewReqs.length + plan.scheduledCachedReqs.length - decodes.length;
          assert.ok(decodes.length === 0 || prompts === 0, JSON.stringify(plan.numScheduledTokens));
        }
        assert.ok(
          exec.plans.some((p) => p.scheduledCachedReqs.length > 1),
          "decodes were batched",
        );
      }
      if (numBlocks === 12)
        assert.ok(engine.stats().numPreemptions > 0, "the tiny cache must force preemption");
      await engine.shutdown();
    }
  });

  it("a seeded request gives the same text whatever else is in the batch; different seeds differ", async () => {
    const { engine } = await engineWith();
    const p = { do_sample: true, seed: 42, max_new_tokens: 16 };
    const solo = (await textOf(engine, "s0", "Hello", p)).text;
    const [withOthers] = await Promise.all([
      textOf(engine, "s1", "Hello", p),
      textOf(engine, "o1", "the world", { do_sample: true, max_new_tokens: 5 }),
      textOf(engine, "o2", "and", { max_new_tokens: 30 }),
    ]);
    assert.equal(withOthers.text, solo);
    assert.equal(withOthers.last.seed, 42);
    const other = (await textOf(engine, "s2", "Hello", { ...p, seed: 43 })).text;
    assert.notEqual(other, solo);
    await engine.shutdown();
  });

  it("ends on eos with eos_token, and ignore_eos_token runs to the length limit", async () => {
    const { engine } = await engineWith({ eosWhen: (_id, n) => n === 3 });
    const eos = await textOf(engine, "e", "Hello", { max_new_tokens: 10 });
    assert.equal(eos.last.finishReason, "eos_token");
    assert.equal(eos.ids.length, 4);
    const eosToken = eos.outs.at(-1)!.tokens.at(-1)!;
    assert.deepEqual(
      [eosToken.id, eosToken.special, eosToken.text],
      [275, true, ""],
      "eos is a special token, skipped in text",
    );
    assert.match(eos.text, /^[a-z]{3}$/);
    const ign = await textOf(engine, "i", "Hello", { max_new_tokens: 10, ignore_eos_token: true });
    assert.equal(ign.last.finishReason, "length");
    assert.equal(ign.ids.length, 10);
    await engine.shutdown();
  });

  it("stops at a stop sequence, frees the request and tells the executor", async () => {
    const { engine, exec } = await engineWith();
    const free = await textOf(engine, "f", "Hello the world", { max_new_tokens: 20 });
    const stop = free.text.slice(5, 7);
    const cut = free.text.indexOf(stop);
    const stopped = await textOf(engine, "s", "Hello the world", { max_new_tokens: 20, stop: [stop] });
    assert.equal(stopped.last.finishReason, "stop_sequence");
    assert.equal(stopped.text, free.text.slice(0, cut));
    await textOf(engine, "next", "x", { max_new_tokens: 1 });
    assert.ok(exec.plans.some((p) => p.finishedReqIds.includes("s")));
    assert.equal(engine.stats().kvCacheUsage, 0);
    await engine.shutdown();
  });

  it("sends the next plan before a client sees a step's tokens, unless stop strings need the text", async () => {
    const { engine, exec } = await engineWith({ stepDelayMs: 2 });
    const calls: SchedulerOutput[] = [];
    const execute = exec.execute.bind(exec);
    exec.execute = (plan) => {
      calls.push(plan);
      return execute(plan);
    };
    // "Hello" is prefilled in one step, so delta i comes from call i + 1; call i + 2 is already out.
    const seen: number[] = [];
    for await (const _ of engine.generate(req("o", "Hello", { max_new_tokens: 4 }))) seen.push(calls.length);
    assert.deepEqual(seen, [2, 3, 4, 5], "the last one after the step that tells the executor it finished");

    const free = await textOf(engine, "f", "Hello the world", { max_new_tokens: 20 });
    const stop = free.text.slice(5, 7);
    const stopped = await textOf(engine, "s", "Hello the world", { max_new_tokens: 20, stop: [stop] });
    assert.equal(stopped.last.finishReason, "stop_sequence");
    const numScheduled = calls.filter((p) => p.numScheduledTokens.s !== undefined).length;
    assert.equal(numScheduled, stopped.last.numGeneratedTokens, "no step runs after the stop string");
    await engine.shutdown();
  });

  it("keeps three steps in flight only behind decode steps, with the same tokens as one at a time", async () => {
    const want = await Promise.all(
      PROMPTS.map(async (p, i) => {
        const { engine } = await engineWith({ stepDelayMs: 1 });
        const r = await textOf(engine, `r${i}`, p, { max_new_tokens: 12 });
        await engine.shutdown();
        return r.ids;
      }),
    );
    const { engine, exec } = await engineWith({ stepDelayMs: 1, maxStepsInFlight: 3 });
    const got = await Promise.all(
      PROMPTS.map(async (p, i) => (await textOf(engine, `r${i}`, p, { max_new_tokens: 12 })).ids),
    );
    assert.deepEqual(got, want);
    const decodeOnly = (p: SchedulerOutput) =>
      p.scheduledNewReqs.length === 0 && Object.values(p.numScheduledTokens).every((n) => n === 1);
    const third = exec.inFlightAtCall.filter((f) => f.length === 3);
    assert.ok(third.length > 0, "three steps were in flight during the decode steps");
    for (const f of exec.inFlightAtCall) assert.ok(f.length <= 3);
    for (const f of third)
      assert.ok(f.slice(0, 2).every(decodeOnly), "a third step went out behind a prompt step");
    // Behind a prompt step only one more goes out (the first plan carries every prompt here).
    assert.ok(exec.inFlightAtCall.some((f) => f.length === 2 && !decodeOnly(f[0])));
    await engine.shutdown();
  });

  for (const settle of ["now", "microtasks"] as const) {
    it(`lets timers and I/O run while it generates, with an executor that settles ${settle === "now" ? "at once" : "after microtasks"}`, async () => {
      const { engine } = await engineWith({ settle });
      let outputsAtTimer = -1;
      let outputs = 0;
      // An event-loop turn: a setImmediate callback runs at the first check phase after this (a timer would
      // depend on the clock: setTimeout(0) waits 1 ms).
      setImmediate(() => {
        outputsAtTimer = outputs;
      });
      for await (const o of engine.generate(req("t", "Hello", { max_new_tokens: 100 }))) {
        outputs++;
        if (o.finished) assert.equal(o.numGeneratedTokens, 100);
      }
      // At once: the first output already gets a setImmediate turn. After microtasks: the loop takes one
      // after at most 16 outputs that came with none (MAX_TURNLESS_WAITS).
      const bound = settle === "now" ? 2 : 17;
      assert.ok(
        outputsAtTimer >= 0 && outputsAtTimer <= bound,
        `timer ran after ${outputsAtTimer} of ${outputs} outputs`,
      );
      await engine.shutdown();
    });
  }

  it("returns top tokens and prompt logprobs when asked", async () => {
    const { engine } = await engineWith({}, { maxNumBatchedTokens: 2 });
    const { last, outs } = await textOf(engine, "d", "Hello the world", {
      max_new_tokens: 2,
      top_n_tokens: 2,
      decoder_input_details: true,
    });
    assert.equal(outs[0].tokens[0].top!.length, 2);
    const prompt = engine.encode("Hello the world");
    assert.deepEqual(
      last.prefill!.map((p) => p.id),
      prompt,
    );
    assert.equal(last.prefill![0].logprob, null);
    assert.deepEqual(
      last.prefill!.slice(1).map((p) => p.logprob),
      prompt.slice(1).map((t) => -1 - (t % 3)),
      "every prompt position, across chunked prefill",
    );
    await engine.shutdown();
  });
});

describe("Engine abort and admission", () => {
  it("aborting the signal ends the stream with abort and frees the blocks at the next step", async () => {
    const { engine, exec } = await engineWith({ stepDelayMs: 2 });
    const ac = new AbortController();
    const outs: RequestOutput[] = [];
    for await (const o of engine.generate(
      req("x", "Hello", { max_new_tokens: 1000, ignore_eos: true }),
      ac.signal,
    )) {
      outs.push(o);
      if (outs.length === 3) ac.abort();
    }
    assert.equal(outs.at(-1)!.finishReason, "abort");
    assert.ok(outs.length <= 5);
    await textOf(engine, "y", "Hello", { max_new_tokens: 2 });
    assert.ok(exec.plans.some((p) => p.finishedReqIds.includes("x")));
    assert.ok(!exec.liveRequestIds().includes("x"));
    assert.equal(engine.stats().kvCacheUsage, 0);
    await engine.shutdown();
  });

  it("breaking out of the loop aborts the request; an already-aborted signal ends it at once", async () => {
    const { engine, exec } = await engineWith({ stepDelayMs: 1 });
    for await (const o of engine.generate(req("b", "Hello", { max_new_tokens: 500 }))) {
      if (o.tokens.length > 0) break;
    }
    const ac = new AbortController();
    ac.abort();
    const outs = await collect(engine.generate(req("pre", "Hello", { max_new_tokens: 500 }), ac.signal));
    assert.equal(outs.length, 1);
    assert.equal(outs[0].finishReason, "abort");
    await textOf(engine, "after", "Hello", { max_new_tokens: 2 });
    assert.ok(!exec.liveRequestIds().includes("b"));
    assert.equal(engine.stats().numRunning + engine.stats().numWaiting, 0);
    await engine.shutdown();
  });

  it("refuses an executor whose contrastive hidden-state pool cannot hold one full-length request", async () => {
    await assert.rejects(engineWith({ maxModelLen: 64, contrastivePositions: 48 }), (e: unknown) => {
      assert.match(
        String((e as Error).message),
        /contrastive-search hidden states for 48 positions.*max model length \(64\)/,
      );
      return true;
    });
  });

  it("runs contrastive requests that exceed the hidden-state pool together one after another", async () => {
    // 64 pool positions, 16-position chunks: each request (a few prompt tokens + 40 max tokens) holds 48.
    const { engine, exec } = await engineWith({ maxModelLen: 64, contrastivePositions: 64 });
    const params = { decoding_strategy: "contrastive", max_new_tokens: 40 };
    const outs = await Promise.all(["a", "b"].map((id) => textOf(engine, id, "Hi", params)));
    for (const { last } of outs) assert.equal(last.numGeneratedTokens, 40);
    const starts = ["a", "b"].map((id) =>
      exec.plans.findIndex((p) => p.scheduledNewReqs.some((r) => r.reqId === id)),
    );
    const aEnd = exec.plans.findIndex((p) => p.finishedReqIds.includes("a"));
    assert.ok(
      starts[1] >= aEnd && aEnd > starts[0],
      `b admitted at step ${starts[1]}, after a finished (${aEnd})`,
    );
    await engine.shutdown();
  });

  it("rejects a prompt that reaches the max model length with 424, at once", async () => {
    const { engine } = await engineWith({ maxModelLen: 16 });
    const long = "the ".repeat(20);
    await assert.rejects(collect(engine.generate(req("l", long))), (e: unknown) => {
      assert.ok(e instanceof PromptTooLongError);
      assert.equal(e.status, 424);
      return true;
    });
    // truncate keeps the last tokens, so the same prompt then fits; generation is capped by the length.
    const { last } = await textOf(engine, "t", long, { truncate: 10, max_new_tokens: 100 });
    assert.equal(last.numPromptTokens, 10);
    assert.equal(last.numGeneratedTokens, 6);
    assert.equal(last.finishReason, "length");
    await engine.shutdown();
  });

  it("refuses requests beyond job_queue_size with 503, and bad prompts with 400", async () => {
    const { engine } = await engineWith({ stepDelayMs: 5 }, { maxNumSeqs: 1, jobQueueSize: 2 });
    const a = engine.generate(req("a", "Hello", { max_new_tokens: 3 }))[Symbol.asyncIterator]();
    const b = engine.generate(req("b", "Hello", { max_new_tokens: 3 }))[Symbol.asyncIterator]();
    const pa = a.next();
    const pb = b.next(); // both are waiting now: a has not been scheduled yet
    const c = engine.generate(req("c", "Hello"))[Symbol.asyncIterator]();
    await assert.rejects(c.next(), (e: unknown) => e instanceof OverloadedError && e.status === 503);
    await pa;
    await pb;
    await collect({ [Symbol.asyncIterator]: () => a });
    await collect({ [Symbol.asyncIterator]: () => b });
    await assert.rejects(
      collect(engine.generate(req("e", ""))),
      (e: unknown) => e instanceof ValidationError,
    );
    await assert.rejects(
      collect(
        engine.generate({ requestId: "ids", prompt: { tokenIds: [1, 99999] }, params: req("", "").params }),
      ),
      (e: unknown) => e instanceof ValidationError && e.field === "prompt",
    );
    await assert.rejects(
      collect(engine.generate(req("lb", "Hello", { logit_bias: { 5000: 1 } }))),
      (e: unknown) =>
        e instanceof ValidationError && e.field === "logit_bias" && /outside the vocabulary/.test(e.message),
    );
    const byIds = await collect(
      engine.generate({
        requestId: "ids2",
        prompt: { tokenIds: [274, 72] },
        params: req("", "", { max_new_tokens: 2 }).params,
      }),
    );
    assert.equal(byIds.at(-1)!.numPromptTokens, 2);
    await engine.shutdown();
  });

  it("waits for work without polling the executor", async () => {
    const { engine, exec } = await engineWith();
    await textOf(engine, "w", "Hello", { max_new_tokens: 2 });
    await new Promise((r) => setTimeout(r, 20));
    const n = exec.plans.length;
    // After the last token, one more (empty) step tells the executor the request is finished.
    assert.deepEqual(exec.plans.at(-1)!.finishedReqIds, ["w"]);
    assert.equal(exec.plans.at(-1)!.totalNumScheduledTokens, 0);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(exec.plans.length, n, "idle: no more steps");
    await engine.shutdown();
  });
});

describe("Engine failures", () => {
  it("fails in-flight requests when the executor dies, refuses new ones, and recovers on attachExecutor", async () => {
    const { engine, exec } = await engineWith({ stepDelayMs: 2 });
    const deaths: string[] = [];
    engine.onDeath((reason) => deaths.push(reason));
    const outs: RequestOutput[] = [];
    for await (const o of engine.generate(req("d", "Hello", { max_new_tokens: 1000 }))) {
      outs.push(o);
      if (outs.length === 2) exec.die(new Error("worker thread exited with code 1"));
    }
    const last = outs.at(-1)!;
    assert.equal(last.finishReason, "error");
    assert.match(last.error!, /worker thread exited with code 1/);
    assert.equal(engine.isAlive, false);
    assert.equal(deaths.length, 1);
    assert.match(deaths[0], /worker thread exited/);
    await assert.rejects(
      collect(engine.generate(req("n", "Hello"))),
      (e: unknown) => e instanceof EngineDeadError,
    );
    exec.die(new Error("a second report of the same death"));
    assert.equal(deaths.length, 1, "one death, one report");
    await engine.attachExecutor(new ToyExecutor());
    assert.equal(engine.isAlive, true);
    const again = await textOf(engine, "r", "Hello", { max_new_tokens: 3 });
    assert.equal(again.last.finishReason, "length");
    await engine.shutdown();
    assert.equal(deaths.length, 1, "shutdown is not a death");
  });

  it("fails in-flight requests when execute() rejects", async () => {
    const { engine, exec } = await engineWith({ stepDelayMs: 1 });
    const pending = textOf(engine, "q", "Hello", { max_new_tokens: 100 });
    const other = textOf(engine, "q2", "the world", { max_new_tokens: 100 });
    exec.failNextExecute(new Error("CUDA error: an illegal memory access"));
    const [a, b] = await Promise.all([pending, other]);
    for (const r of [a, b]) {
      assert.equal(r.last.finishReason, "error");
      assert.match(r.last.error!, /illegal memory access/);
    }
    await assert.rejects(
      collect(engine.generate(req("n", "Hello"))),
      (e: unknown) => e instanceof EngineDeadError,
    );
    await engine.shutdown();
  });

  it("shutdown ends in-flight requests and shuts the executor down", async () => {
    const { engine, exec } = await engineWith({ stepDelayMs: 2 });
    const pending = textOf(engine, "s", "Hello", { max_new_tokens: 1000 });
    await new Promise((r) => setTimeout(r, 10));
    await engine.shutdown();
    const r = await pending;
    assert.equal(r.last.finishReason, "error");
    assert.ok(exec.isShutDown);
    await assert.rejects(
      collect(engine.generate(req("n", "Hello"))),
      (e: unknown) => e instanceof EngineDeadError,
    );
  });
});
