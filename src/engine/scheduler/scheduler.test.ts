import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createRequests, createScheduler, EOS, step } from "../../../test/engine/helpers.ts";

describe("Scheduler admission and budget", () => {
  it("admits at most maxNumSeqs requests and admits the next when one finishes", () => {
    const sched = createScheduler({ maxNumSeqs: 2 });
    const reqs = createRequests(3, { maxTokens: 2 });
    for (const r of reqs) sched.addRequest(r);
    const { plan } = step(sched);
    assert.deepEqual(
      plan.scheduledNewReqs.map((r) => r.reqId),
      ["req-0", "req-1"],
    );
    assert.equal(sched.numWaiting, 1);
    const second = step(sched); // both reach maxTokens = 2
    assert.deepEqual(
      second.outputs.map((o) => o.finishReason),
      ["length", "length"],
    );
    const third = step(sched);
    assert.deepEqual(
      third.plan.scheduledNewReqs.map((r) => r.reqId),
      ["req-2"],
    );
    assert.deepEqual(third.plan.finishedReqIds.sort(), ["req-0", "req-1"]);
  });

  it("never schedules more tokens than the budget, chunking the prompt that does not fit", () => {
    const sched = createScheduler({ maxNumBatchedTokens: 10 });
    const [a, b] = createRequests(2, { numTokens: 8 });
    sched.addRequest(a);
    sched.addRequest(b);
    const s1 = step(sched);
    assert.deepEqual(s1.plan.numScheduledTokens, { "req-0": 8, "req-1": 2 });
    assert.equal(s1.plan.totalNumScheduledTokens, 10);
    assert.deepEqual(
      s1.outputs.map((o) => [o.reqId, o.newTokenIds]),
      [["req-0", [7]]],
      "only the fully prefilled request samples",
    );
    const s2 = step(sched);
    // Running requests go first: a decodes 1 token, b gets its remaining 6.
    assert.deepEqual(s2.plan.numScheduledTokens, { "req-0": 1, "req-1": 6 });
    assert.equal(s2.plan.scheduledCachedReqs.find((r) => r.reqId === "req-1")!.numComputedTokens, 2);
    assert.equal(b.numOutputTokens, 1);
  });

  it("chunks a long prompt over several steps with no special case", () => {
    const sched = createScheduler({ maxNumBatchedTokens: 10, blockSize: 4 });
    const [r] = createRequests(1, { numTokens: 25 });
    sched.addRequest(r);
    const chunks: number[] = [];
    const starts: number[] = [];
    for (let i = 0; i < 3; i++) {
      const { plan, outputs } = step(sched);
      chunks.push(plan.numScheduledTokens["req-0"]);
      starts.push(
        i === 0 ? plan.scheduledNewReqs[0].numComputedTokens : plan.scheduledCachedReqs[0].numComputedTokens,
      );
      assert.equal(outputs.length, i < 2 ? 0 : 1);
    }
    assert.deepEqual(chunks, [10, 10, 5]);
    assert.deepEqual(starts, [0, 10, 20]);
    assert.equal(sched.kv.numBlocksOf("req-0"), 7, "ceil(26/4): the prompt plus the sampled token's slot");
  });

  it("serves requests first come, first served", () => {
    const sched = createScheduler({ maxNumBatchedTokens: 10, maxNumSeqs: 1 });
    const reqs = createRequests(3, { numTokens: 4, maxTokens: 1 });
    for (const r of reqs) sched.addRequest(r);
    const order: string[] = [];
    while (sched.hasUnfinishedRequests) {
      const { plan } = step(sched);
      order.push(...plan.scheduledNewReqs.map((r) => r.reqId));
    }
    assert.deepEqual(order, ["req-0", "req-1", "req-2"]);
  });

  it("holds new requests back for option.waiting_steps while others run", () => {
    const sched = createScheduler({ waitingSteps: 2 });
    const [a] = createRequests(1, { maxTokens: 10, idPrefix: "a" });
    sched.addRequest(a);
    step(sched);
    const [b] = createRequests(1, { idPrefix: "b" });
    sched.addRequest(b);
    assert.equal(step(sched).plan.scheduledNewReqs.length, 0);
    assert.equal(step(sched).plan.scheduledNewReqs.length, 0);
    assert.deepEqual(
      step(sched).plan.scheduledNewReqs.map((r) => r.reqId),
      ["b-0"],
    );
  });
});

describe("Scheduler with option.enable_chunked_prefill=false (prompts first)", () => {
  it("gives a step with prompt work to prompts alone, then decodes everyone together", () => {
    const sched = createScheduler({ mixPrefillAndDecode: false });
    const [a] = createRequests(1, { numTokens: 5, maxTokens: 10, idPrefix: "a" });
    sched.addRequest(a);
    assert.deepEqual(step(sched).plan.numScheduledTokens, { "a-0": 5 });
    const [b] = createRequests(1, { numTokens: 6, maxTokens: 10, idPrefix: "b" });
    sched.addRequest(b);
    const s2 = step(sched);
    assert.deepEqual(s2.plan.numScheduledTokens, { "b-0": 6 }, "a's decode waits for the prompt step");
    assert.deepEqual(s2.plan.scheduledCachedReqs, []);
    assert.deepEqual(step(sched).plan.numScheduledTokens, { "a-0": 1, "b-0": 1 });
  });

  it("the default mixes the same decode into the prompt's step", () => {
    const sched = createScheduler();
    const [a] = createRequests(1, { numTokens: 5, maxTokens: 10, idPrefix: "a" });
    sched.addRequest(a);
    step(sched);
    const [b] = createRequests(1, { numTokens: 6, maxTokens: 10, idPrefix: "b" });
    sched.addRequest(b);
    assert.deepEqual(step(sched).plan.numScheduledTokens, { "a-0": 1, "b-0": 6 });
  });

  it("continues a prompt longer than the budget in prompt-only steps before any decode", () => {
    const sched = createScheduler({ mixPrefillAndDecode: false, maxNumBatchedTokens: 10 });
    const [a] = createRequests(1, { numTokens: 4, maxTokens: 10, idPrefix: "a" });
    sched.addRequest(a);
    step(sched);
    const [b] = createRequests(1, { numTokens: 25, maxTokens: 10, idPrefix: "b" });
    sched.addRequest(b);
    const plans = [step(sched), step(sched), step(sched), step(sched)].map((s) => s.plan.numScheduledTokens);
    assert.deepEqual(plans, [{ "b-0": 10 }, { "b-0": 10 }, { "b-0": 5 }, { "a-0": 1, "b-0": 1 }]);
    assert.equal(b.numOutputTokens, 2);
  });

  it("fills the budget with several prompts, chunking the last, and admits FCFS", () => {
    const sched = createScheduler({ mixPrefillAndDecode: false, maxNumBatchedTokens: 10 });
    for (const r of createRequests(3, { numTokens: 4, maxTokens: 3 })) sched.addRequest(r);
    assert.deepEqual(step(sched).plan.numScheduledTokens, { "req-0": 4, "req-1": 4, "req-2": 2 });
    assert.deepEqual(step(sched).plan.numScheduledTokens, { "req-2": 2 }, "the chunked prompt first, alone");
    assert.deepEqual(step(sched).plan.numScheduledTokens, { "req-0": 1, "req-1": 1, "req-2": 1 });
  });

  it("admits nobody past a running prompt that has no room for its next chunk", () => {
    // 4 blocks of 4 slots. Step 1: c's 3-token prompt and 5 of a's 20 (3 blocks). Step 2: a's next 8 tokens
    // need 2 more blocks, 1 is free: b (one block) must not take it; the step falls back to decoding c and
    // giving a what fits.
    const sched = createScheduler({
      mixPrefillAndDecode: false,
      blockSize: 4,
      numBlocks: 4,
      maxNumBatchedTokens: 8,
      enablePrefixCaching: false,
    });
    const [c] = createRequests(1, { numTokens: 3, maxTokens: 5, idPrefix: "c" });
    const [a] = createRequests(1, { numTokens: 20, maxTokens: 1, idPrefix: "a" });
    sched.addRequest(c);
    sched.addRequest(a);
    assert.deepEqual(step(sched).plan.numScheduledTokens, { "c-0": 3, "a-0": 5 });
    const [b] = createRequests(1, { numTokens: 2, maxTokens: 1, idPrefix: "b" });
    sched.addRequest(b);
    const s2 = step(sched).plan;
    assert.deepEqual(s2.scheduledNewReqs, []);
    assert.deepEqual(s2.numScheduledTokens, { "c-0": 1, "a-0": 7 });
  });

  it("decodes when the waiting request cannot be admitted (batch full, or no KV room)", () => {
    const full = createScheduler({ mixPrefillAndDecode: false, maxNumSeqs: 1 });
    const [a, b] = createRequests(2, { numTokens: 4, maxTokens: 3 });
    full.addRequest(a);
    full.addRequest(b);
    assert.deepEqual(step(full).plan.numScheduledTokens, { "req-0": 4 });
    assert.deepEqual(step(full).plan.numScheduledTokens, { "req-0": 1 }, "maxNumSeqs reached: decode");

    // 2 blocks of 4 slots: a holds one, b's 8-token prompt needs two.
    const tight = createScheduler({
      mixPrefillAndDecode: false,
      blockSize: 4,
      numBlocks: 2,
      enablePrefixCaching: false,
    });
    const [c] = createRequests(1, { numTokens: 2, maxTokens: 2, idPrefix: "c" });
    const [d] = createRequests(1, { numTokens: 8, maxTokens: 1, idPrefix: "d" });
    tight.addRequest(c);
    step(tight);
    tight.addRequest(d);
    const s = step(tight);
    assert.deepEqual(s.plan.numScheduledTokens, { "c-0": 1 }, "no room for d's prompt: c decodes");
    assert.equal(s.outputs[0].finishReason, "length");
    assert.deepEqual(step(tight).plan.numScheduledTokens, { "d-0": 8 }, "c's blocks freed: d runs");
  });
});

describe("Scheduler stop conditions", () => {
  it("finishes on eos, on a stop token, at maxTokens and at maxModelLen", () => {
    const sched = createScheduler({ maxModelLen: 14 });
    const [eos] = createRequests(1, { idPrefix: "eos" });
    const [stop] = createRequests(1, { idPrefix: "stop", stopTokenIds: [9] });
    const [len] = createRequests(1, { idPrefix: "len", maxTokens: 2 });
    const [model] = createRequests(1, { idPrefix: "model", numTokens: 12, maxTokens: 100 });
    for (const r of [eos, stop, len, model]) sched.addRequest(r);
    const token = (id: string, n: number) =>
      id.startsWith("eos") && n === 1 ? EOS : id.startsWith("stop") ? 9 : 7;
    const reasons = new Map<string, string>();
    for (let i = 0; i < 5 && sched.hasUnfinishedRequests; i++) {
      for (const o of step(sched, token).outputs) if (o.finishReason) reasons.set(o.reqId, o.finishReason);
    }
    assert.deepEqual(Object.fromEntries(reasons), {
      "stop-0": "stop_sequence",
      "len-0": "length",
      "eos-0": "eos_token",
      "model-0": "length",
    });
    assert.equal(model.numTokens, 14);
    assert.deepEqual(eos.allTokenIds.slice(-2), [7, EOS]);
  });

  it("ignores eos before min tokens and when ignoreEos is set", () => {
    const sched = createScheduler();
    const [min] = createRequests(1, { idPrefix: "min", maxTokens: 5, sampling: { minTokens: 3 } });
    const [ign] = createRequests(1, { idPrefix: "ign", maxTokens: 4, sampling: { ignoreEos: true } });
    sched.addRequest(min);
    sched.addRequest(ign);
    const reasons = new Map<string, string>();
    while (sched.hasUnfinishedRequests) {
      for (const o of step(sched, () => EOS).outputs)
        if (o.finishReason) reasons.set(o.reqId, o.finishReason);
    }
    assert.equal(min.numOutputTokens, 3);
    assert.equal(reasons.get("min-0"), "eos_token");
    assert.equal(ign.numOutputTokens, 4);
    assert.equal(reasons.get("ign-0"), "length");
  });
});

describe("Scheduler preemption", () => {
  it("preempts the newest request when blocks run out and resumes it with its tokens", () => {
    // 4 blocks of 4 tokens; two requests of 6 prompt tokens each take 2 blocks; growing past 8 tokens needs more.
    const sched = createScheduler({ numBlocks: 4, blockSize: 4, enablePrefixCaching: false });
    const [a, b] = createRequests(2, { numTokens: 6, maxTokens: 6 });
    sched.addRequest(a);
    sched.addRequest(b);
    let sawPreempt = false;
    let sawResume = false;
    let steps = 0;
    while (sched.hasUnfinishedRequests && steps++ < 50) {
      const { plan } = step(sched, (id, n) => (id === "req-0" ? 100 + n : 200 + n));
      if (plan.preemptedReqIds.length > 0) {
        sawPreempt = true;
        assert.deepEqual(plan.preemptedReqIds, ["req-1"], "the newest request is the victim");
        assert.equal(plan.numScheduledTokens["req-1"], undefined);
      }
      const resumed = plan.scheduledCachedReqs.find((r) => r.resumedFromPreemption);
      if (resumed) {
        sawResume = true;
        assert.equal(resumed.reqId, "req-1");
        assert.equal(
          resumed.allTokenIds!.length,
          plan.numScheduledTokens["req-1"],
          "everything is recomputed",
        );
        assert.deepEqual(resumed.allTokenIds, b.allTokenIds.slice(0, resumed.allTokenIds!.length));
        assert.ok(resumed.allTokenIds!.length > 6, "the resumed request carries its generated tokens");
        assert.deepEqual(resumed.newBlockIds, sched.kv.getBlockIds("req-1"), "full block table on resume");
        assert.equal(resumed.numComputedTokens, 0);
      }
    }
    assert.ok(sawPreempt && sawResume);
    assert.deepEqual(a.allTokenIds.slice(6), [100, 101, 102, 103, 104, 105]);
    assert.deepEqual(b.allTokenIds.slice(6), [200, 201, 202, 203, 204, 205], "no token lost or repeated");
    assert.equal(sched.stats().numPreemptions, b.numPreemptions);
    assert.equal(sched.kv.pool.numFreeBlocks, 4);
  });

  it("preempts a request that cannot grow even when it is the only one left, then resumes it", () => {
    const sched = createScheduler({
      numBlocks: 3,
      blockSize: 4,
      enablePrefixCaching: false,
      maxNumBatchedTokens: 100,
    });
    const [a, b] = createRequests(2, { numTokens: 4, maxTokens: 5 });
    sched.addRequest(a);
    sched.addRequest(b);
    let steps = 0;
    while (sched.hasUnfinishedRequests && steps++ < 100) step(sched);
    assert.equal(a.numOutputTokens, 5);
    assert.equal(b.numOutputTokens, 5);
    assert.ok(b.numPreemptions > 0);
  });

  it("random load with tiny KV: invariants hold every step, and every request finishes with all its tokens", () => {
    let seed = 42;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    const sched = createScheduler({ numBlocks: 12, blockSize: 4, maxNumBatchedTokens: 16, maxNumSeqs: 5 });
    const all = createRequests(30, { numTokens: 5 }).map((r, i) => ({ r, at: Math.floor(i * 1.5) }));
    const aborted = new Set<string>();
    for (let t = 0; t < 2000 && (all.some((x) => x.r.status !== "finished") || t < 50); t++) {
      for (const x of all) if (x.at === t) sched.addRequest(x.r);
      if (rand() < 0.05) {
        const live = sched.unfinishedRequestIds();
        if (live.length > 0) {
          const id = live[Math.floor(rand() * live.length)];
          aborted.add(id);
          sched.finishRequests([id], "abort");
        }
      }
      step(sched, (id, n) => Number(id.split("-")[1]) * 1000 + n + 10); // never EOS
    }
    for (const { r } of all) {
      assert.equal(r.status, "finished", `${r.reqId} never finished`);
      if (aborted.has(r.reqId)) continue;
      const idx = Number(r.reqId.split("-")[1]);
      assert.deepEqual(
        r.allTokenIds.slice(r.numPromptTokens),
        Array.from({ length: 16 }, (_, n) => idx * 1000 + n + 10),
      );
    }
    assert.equal(sched.kv.pool.numFreeBlocks, 12);
    assert.ok(sched.stats().numPreemptions > 0, "the load must actually exercise preemption");
  });
});

/** A scheduler (16-token blocks) whose cache holds the two full blocks of a finished 33-token prompt. */
function afterOnePrompt(first: number) {
  const sched = createScheduler({ blockSize: 16 });
  const prompt = Array.from({ length: 33 }, (_, i) => first + i);
  const [a] = createRequests(1, { prompt, maxTokens: 2, idPrefix: "a" });
  sched.addRequest(a);
  while (sched.hasUnfinishedRequests) step(sched);
  return { sched, prompt };
}

describe("Scheduler prefix caching", () => {
  it("serves a repeated prompt's full blocks from the cache", () => {
    const { sched, prompt } = afterOnePrompt(500);
    const [b] = createRequests(1, { prompt, maxTokens: 2, idPrefix: "b" });
    sched.addRequest(b);
    const { plan } = step(sched);
    assert.equal(plan.scheduledNewReqs[0].numComputedTokens, 32);
    assert.equal(plan.numScheduledTokens["b-0"], 1);
    assert.deepEqual(plan.scheduledNewReqs[0].blockIds.slice(0, 2), sched.kv.getBlockIds("b-0").slice(0, 2));
    assert.equal(b.numCachedTokens, 32);
    const st = sched.stats();
    assert.equal(st.prefixCacheHits, 32);
    assert.equal(st.prefixCacheQueries, 66);
  });

  it("computes every prompt position of prompt-logprobs and contrastive requests", () => {
    const { sched, prompt } = afterOnePrompt(700);
    const kinds = [
      { promptLogprobs: true },
      { strategy: "contrastive" as const, topK: 4, penaltyAlpha: 0.6 },
      {},
    ];
    const got = kinds.map((sampling, i) => {
      const [r] = createRequests(1, { prompt, maxTokens: 2, idPrefix: `k${i}`, sampling });
      sched.addRequest(r);
      const { plan } = step(sched);
      while (sched.hasUnfinishedRequests) step(sched);
      return plan.scheduledNewReqs[0].numComputedTokens;
    });
    assert.deepEqual(got, [0, 0, 32]); // (the last, greedy, does take the cached blocks)
  });

  it("shares prefix blocks with a running request (reference count 2)", () => {
    const sched = createScheduler({ blockSize: 4 });
    const prompt = Array.from({ length: 9 }, (_, i) => 900 + i);
    const [a] = createRequests(1, { prompt, maxTokens: 10, idPrefix: "a" });
    sched.addRequest(a);
    step(sched);
    const [b] = createRequests(1, { prompt: [...prompt.slice(0, 8), 1], idPrefix: "b" });
    sched.addRequest(b);
    step(sched);
    const shared = sched.kv.getBlockIds("a-0").slice(0, 2);
    assert.deepEqual(sched.kv.getBlockIds("b-0").slice(0, 2), shared);
    assert.equal(sched.kv.pool.block(shared[0]).refCnt, 2);
  });
});

describe("Scheduler abort", () => {
  it("frees a running request's blocks at once and tells the executor at the next step", () => {
    const sched = createScheduler({ blockSize: 4, enablePrefixCaching: false, numBlocks: 10 });
    const [a, b] = createRequests(2, { numTokens: 10 });
    sched.addRequest(a);
    sched.addRequest(b);
    step(sched);
    assert.equal(sched.kv.pool.numFreeBlocks, 4);
    sched.finishRequests(["req-0"], "abort");
    assert.equal(sched.kv.pool.numFreeBlocks, 7);
    assert.equal(a.finishReason, "abort");
    const { plan } = step(sched);
    assert.deepEqual(plan.finishedReqIds, ["req-0"]);
    assert.equal(plan.numScheduledTokens["req-0"], undefined);
    sched.kv.pool.checkInvariants();
  });

  it("tells the executor about a preempted request aborted while it waits to resume", () => {
    const sched = createScheduler({ numBlocks: 4, blockSize: 4, enablePrefixCaching: false });
    const [a, b] = createRequests(2, { numTokens: 6, maxTokens: 10 });
    sched.addRequest(a);
    sched.addRequest(b);
    let steps = 0;
    while (b.status !== "preempted" && steps++ < 20) step(sched);
    assert.equal(b.status, "preempted");
    sched.finishRequests(["req-1"], "abort");
    assert.deepEqual(step(sched).plan.finishedReqIds, ["req-1"], "the executor still holds its settings");
  });

  it("removes a waiting request without telling the executor (it never saw it)", () => {
    const sched = createScheduler({ maxNumSeqs: 1 });
    const [a, b] = createRequests(2);
    sched.addRequest(a);
    sched.addRequest(b);
    step(sched);
    sched.finishRequests(["req-1"], "abort");
    assert.equal(sched.numWaiting, 0);
    const { plan } = step(sched);
    assert.deepEqual(plan.finishedReqIds, []);
    assert.equal(sched.getRequest("req-1"), undefined);
  });
});

describe("Scheduler and the executor's contrastive hidden-state pool", () => {
  const contrastive = { strategy: "contrastive" as const, topK: 4, penaltyAlpha: 0.6 };

  it("admits contrastive requests only while their positions fit, FCFS, and frees them when they finish", () => {
    // Chunks of 8 positions, 32 in all: a request of 10 prompt + 6 max tokens holds 16.
    const sched = createScheduler({ contrastivePositions: 32, contrastiveChunk: 8 });
    const [a, b, c] = createRequests(3, { numTokens: 10, maxTokens: 6, sampling: contrastive });
    const [g] = createRequests(1, { numTokens: 10, maxTokens: 6, idPrefix: "greedy" });
    for (const r of [a, b, c, g]) sched.addRequest(r);
    const first = step(sched);
    assert.deepEqual(
      first.plan.scheduledNewReqs.map((r) => r.reqId),
      ["req-0", "req-1"],
      "the third contrastive request does not fit, and nobody jumps it",
    );
    assert.equal(sched.contrastivePositionsInUse, 32);
    let steps = 0;
    while (a.status !== "finished" && steps++ < 20) step(sched);
    assert.equal(b.status, "finished");
    assert.equal(sched.contrastivePositionsInUse, 0);
    const next = step(sched);
    assert.deepEqual(
      next.plan.scheduledNewReqs.map((r) => r.reqId),
      ["req-2", "greedy-0"],
    );
    assert.equal(sched.contrastivePositionsInUse, 16, "greedy requests hold none");
  });

  it("releases a preempted request's positions and takes them again when it resumes", () => {
    const sched = createScheduler({
      numBlocks: 4,
      blockSize: 4,
      enablePrefixCaching: false,
      contrastivePositions: 64,
      contrastiveChunk: 4,
    });
    const [a, b] = createRequests(2, { numTokens: 6, maxTokens: 6, sampling: contrastive });
    sched.addRequest(a);
    sched.addRequest(b);
    let sawPreempt = false;
    let steps = 0;
    while (sched.hasUnfinishedRequests && steps++ < 50) {
      const { plan } = step(sched);
      if (plan.preemptedReqIds.length > 0) {
        sawPreempt = true;
        assert.equal(sched.contrastivePositionsInUse, 12, "only the running request holds its 6 + 6");
      }
      assert.equal(sched.contrastivePositionsInUse, 12 * sched.numRunning);
    }
    assert.ok(sawPreempt);
    assert.equal(sched.contrastivePositionsInUse, 0);
  });

  it("counts a request's positions up to the max model length only", () => {
    const sched = createScheduler({ maxModelLen: 20, contrastivePositions: 24, contrastiveChunk: 8 });
    const [a] = createRequests(1, { numTokens: 10, maxTokens: 100, sampling: contrastive });
    sched.addRequest(a);
    step(sched);
    assert.equal(sched.contrastivePositionsInUse, 24, "min(10 + 100, 20) rounded up to 8-position chunks");
  });
});
