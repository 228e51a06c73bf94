// The padded scheduler alone (pure): new requests prefill as their own sub-batch and merge into the
// running one next step, finished rows are trimmed by rebuilding their sub-batch, splits follow
// max_sparsity / max_splits, families stay apart, and reserved KV slots never exceed the arena.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { PaddedScheduler, type PaddedSchedulerOptions } from "../../src/engine/padded/padded-scheduler.ts";
import { choosePartition } from "../../src/engine/padded/partition.ts";
import type { Request } from "../../src/engine/request.ts";
import type { ModelRunnerOutput, SchedulerOutput } from "../../src/executor/types.ts";
import { createRequests } from "../engine/helpers.ts";

function sched(o: Partial<PaddedSchedulerOptions> = {}): PaddedScheduler {
  return new PaddedScheduler({
    maxNumSeqs: 16,
    maxNumBatchedTokens: 4096,
    numSlots: 100_000,
    maxModelLen: 1024,
    maxSparsity: 0.33,
    maxSplits: 3,
    ...o,
  });
}

/** Every scheduled request samples token 7 (never eos), as an executor would. */
function fakeOutput(plan: SchedulerOutput): ModelRunnerOutput {
  const out: ModelRunnerOutput = {
    stepId: plan.stepId,
    sampledTokenIds: {},
    logprobs: {},
    promptLogprobs: {},
  };
  for (const id of Object.keys(plan.numScheduledTokens)) {
    out.sampledTokenIds[id] = [7];
    out.logprobs[id] = [{ logprob: -1, top: [] }];
  }
  return out;
}

function step(s: PaddedScheduler): SchedulerOutput {
  const plan = s.schedule();
  assert.ok(s.slotUsage.peak <= s.opts.numSlots, "reserved slots stay within the arena");
  s.updateFromOutput(plan, fakeOutput(plan));
  return plan;
}

function add(s: PaddedScheduler, reqs: Request[]): Request[] {
  for (const r of reqs) s.addRequest(r);
  return reqs;
}

const ids = (plan: SchedulerOutput, which: "decode" | "prefill") => plan.padded![which].map((b) => b.reqIds);

describe("PaddedScheduler: prefill, merge, decode", () => {
  it("prefills new requests as their own sub-batch, then merges them into the running one", () => {
    const s = sched();
    const [a, b] = add(s, [
      ...createRequests(1, { numTokens: 10, idPrefix: "a" }),
      ...createRequests(1, { numTokens: 9, idPrefix: "b" }),
    ]);
    const p1 = step(s);
    assert.deepEqual(ids(p1, "prefill"), [[a.reqId, b.reqId]]);
    assert.deepEqual(ids(p1, "decode"), []);
    assert.equal(p1.numScheduledTokens[a.reqId], 10);
    assert.equal(p1.scheduledNewReqs.length, 2);
    // capacity: widest prompt plus the most tokens still fed after the first (16 - 1)
    assert.equal(p1.padded!.prefill[0].capacity, 10 + 15);
    const [c] = add(s, createRequests(1, { numTokens: 11, idPrefix: "c" }));
    const p2 = step(s);
    assert.deepEqual(ids(p2, "decode"), [[a.reqId, b.reqId]], "the first sub-batch decodes unchanged");
    assert.equal(p2.padded!.decode[0].batchId, p1.padded!.prefill[0].batchId, "no repack without change");
    assert.deepEqual(ids(p2, "prefill"), [[c.reqId]]);
    const p3 = step(s);
    // c (KV 11) merges with a (KV 11) and b (KV 10): one sub-batch, longest first, in a new region.
    assert.deepEqual(ids(p3, "decode"), [[a.reqId, c.reqId, b.reqId]]);
    const merged = p3.padded!.decode[0];
    assert.ok(![p1.padded!.prefill[0].batchId, p2.padded!.prefill[0].batchId].includes(merged.batchId));
    assert.equal(merged.capacity, 11 + 15, "widest KV (11) plus the most tokens any row still feeds");
    assert.deepEqual(
      p3.scheduledCachedReqs.map((r) => [r.reqId, r.numComputedTokens]),
      [
        [a.reqId, 11],
        [c.reqId, 11],
        [b.reqId, 10],
      ],
    );
    const p4 = step(s);
    assert.equal(p4.padded!.decode[0].batchId, merged.batchId, "the merged sub-batch stays put");
    assert.deepEqual(s.layout(), [{ batchId: merged.batchId, reqIds: [a.reqId, c.reqId, b.reqId] }]);
  });

  it("trims finished rows: the sub-batch is rebuilt without them and frees its region when empty", () => {
    const s = sched();
    const [short] = add(s, createRequests(1, { numTokens: 30, maxTokens: 3, idPrefix: "short" }));
    const [long] = add(s, createRequests(1, { numTokens: 28, maxTokens: 10, idPrefix: "long" }));
    const p1 = step(s);
    assert.deepEqual(ids(p1, "prefill"), [[short.reqId, long.reqId]]);
    const cap1 = p1.padded!.prefill[0].capacity;
    assert.equal(cap1, 30 + 9);
    step(s);
    const p3 = step(s); // short samples its 3rd token and finishes
    assert.equal(short.finishReason, "length");
    const p4 = step(s);
    assert.deepEqual(p4.finishedReqIds, [short.reqId]);
    assert.deepEqual(ids(p4, "decode"), [[long.reqId]]);
    assert.notEqual(p4.padded!.decode[0].batchId, p3.padded!.decode[0].batchId, "trimmed into a new region");
    // long has KV 28 + 2 fed tokens = 30 and 3 of its 10 tokens sampled: 7 more to feed.
    assert.equal(p4.padded!.decode[0].capacity, 30 + 7);
    assert.ok(p4.padded!.decode[0].capacity < cap1, "the padding only the finished row needed is gone");
    assert.equal(s.slotUsage.reserved, 37);
    while (s.hasPendingWork) step(s);
    assert.equal(s.slotUsage.reserved, 0);
    assert.deepEqual(s.layout(), []);
  });

  it("an aborted row is trimmed like a finished one", () => {
    const s = sched();
    const reqs = add(s, createRequests(3, { numTokens: 8, idPrefix: "x" }));
    step(s);
    step(s);
    s.finishRequests([reqs[1].reqId], "abort");
    const p = step(s);
    assert.deepEqual(p.finishedReqIds, [reqs[1].reqId]);
    assert.deepEqual(ids(p, "decode"), [[reqs[0].reqId, reqs[2].reqId]]);
  });
});

describe("PaddedScheduler: splits and families", () => {
  it("splits the running rows by choosePartition on their KV lengths", () => {
    const s = sched({ maxSparsity: 0.1, maxSplits: 3 });
    const lens = [38, 33, 24, 22];
    const reqs = lens.map((n, i) => createRequests(1, { numTokens: n, idPrefix: `l${i}` })[0]);
    add(s, reqs);
    const p1 = step(s);
    // Prefill groups follow the same rule on prompt lengths.
    const want = choosePartition(lens, s.opts).parts.map((p) => p.map((i) => reqs[i].reqId));
    assert.deepEqual(ids(p1, "prefill"), want);
    assert.deepEqual(want, [
      [reqs[0].reqId, reqs[1].reqId],
      [reqs[2].reqId, reqs[3].reqId],
    ]);
    const p2 = step(s);
    assert.deepEqual(ids(p2, "decode"), want, "same parts: the prefill regions are kept as they are");
    assert.deepEqual(
      p2.padded!.decode.map((b) => b.batchId),
      p1.padded!.prefill.map((b) => b.batchId),
    );
  });

  it("max_sparsity 0 with room for every split gives one row per distinct length", () => {
    const s = sched({ maxSparsity: 0, maxSplits: 8 });
    add(
      s,
      [5, 9, 9, 14].map((n, i) => createRequests(1, { numTokens: n, idPrefix: `z${i}` })[0]),
    );
    const p = step(s);
    assert.deepEqual(
      p.padded!.prefill.map((b) => b.reqIds.length),
      [1, 2, 1],
    );
  });

  it("greedy/sample rows and contrastive rows never share a sub-batch", () => {
    const s = sched({ maxSparsity: 1 });
    add(s, [
      ...createRequests(2, { numTokens: 6, idPrefix: "g" }),
      ...createRequests(1, { numTokens: 6, idPrefix: "s", sampling: { strategy: "sample" } }),
      ...createRequests(2, { numTokens: 6, idPrefix: "c", sampling: { strategy: "contrastive" } }),
    ]);
    step(s);
    const p = step(s);
    assert.deepEqual(ids(p, "decode"), [
      ["g-0", "g-1", "s-0"],
      ["c-0", "c-1"],
    ]);
  });
});

describe("PaddedScheduler: admission limits", () => {
  it("admits only what the KV arena holds (reserved rows x capacity) and the rest as slots free up", () => {
    // Each request reserves 10 + 4 = 14 slots alone; 30 slots hold two.
    const s = sched({ numSlots: 30, maxSparsity: 1 });
    add(s, createRequests(4, { numTokens: 10, maxTokens: 5, idPrefix: "m" }));
    const p1 = step(s);
    assert.deepEqual(ids(p1, "prefill"), [["m-0", "m-1"]]);
    assert.equal(s.numWaiting, 2);
    let seen = 2;
    for (let i = 0; i < 30 && s.hasPendingWork; i++) seen += step(s).scheduledNewReqs.length;
    assert.equal(seen, 4);
    assert.ok(s.slotUsage.peak <= 30);
  });

  it("keeps max_rolling_batch_size and the prefill token budget (padding counted)", () => {
    const s = sched({ maxNumSeqs: 3, maxNumBatchedTokens: 25 });
    add(s, createRequests(5, { numTokens: 10, idPrefix: "q" }));
    const p1 = step(s);
    assert.equal(p1.scheduledNewReqs.length, 2, "a third 10-token prompt would make 30 > 25 tokens");
    const p2 = step(s);
    assert.equal(p2.scheduledNewReqs.length, 1, "max_rolling_batch_size 3");
  });

  it("option.waiting_steps: with requests running, a new one waits that many steps", () => {
    const s = sched({ waitingSteps: 2 });
    add(s, createRequests(1, { numTokens: 4, idPrefix: "first" }));
    assert.equal(step(s).scheduledNewReqs.length, 1, "nothing runs: admitted at once");
    add(s, createRequests(1, { numTokens: 4, idPrefix: "late" }));
    assert.equal(step(s).scheduledNewReqs.length, 0);
    assert.equal(step(s).scheduledNewReqs.length, 0);
    assert.deepEqual(
      step(s).scheduledNewReqs.map((r) => r.reqId),
      ["late-0"],
    );
  });

  it("a prompt longer than the prefill budget still runs alone", () => {
    const s = sched({ maxNumBatchedTokens: 8 });
    add(s, createRequests(1, { numTokens: 20, idPrefix: "big" }));
    assert.equal(step(s).scheduledNewReqs.length, 1);
  });

  it("rejects bad options", () => {
    assert.throws(() => sched({ maxSparsity: -0.1 }), /max_sparsity/);
    assert.throws(() => sched({ maxSplits: 0 }), /max_splits/);
    assert.throws(() => sched({ numSlots: 0 }), /numSlots/);
  });
});
