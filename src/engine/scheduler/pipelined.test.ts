// The scheduler with steps pipelined: schedule() runs again before the previous plan's output is
// applied (the engine does this when the executor takes two steps at once).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createRequests, createScheduler, EOS } from "../../../test/engine/helpers.ts";
import type { ModelRunnerOutput, SchedulerOutput } from "../../executor/types.ts";
import type { Scheduler } from "./scheduler.ts";

interface Sent {
  plan: SchedulerOutput;
  /** Requests this step samples for (what the executor will return a token for). */
  samples: string[];
}

/** Schedules one step without applying any output yet; records which requests it samples for. */
function send(sched: Scheduler): Sent {
  const before = new Map<string, number>();
  for (const id of sched.unfinishedRequestIds()) before.set(id, sched.getRequest(id)!.numPendingSamples);
  const plan = sched.schedule();
  sched.kv.pool.checkInvariants();
  const samples = Object.keys(plan.numScheduledTokens).filter(
    (id) => sched.getRequest(id)!.numPendingSamples > (before.get(id) ?? 0),
  );
  return { plan, samples };
}

/** Applies a sent step's output: token `tokenFor(reqId)` for each request it sampled for. */
function receive(sched: Scheduler, sent: Sent, tokenFor: (reqId: string) => number = () => 7) {
  const out: ModelRunnerOutput = {
    stepId: sent.plan.stepId,
    sampledTokenIds: {},
    logprobs: {},
    promptLogprobs: {},
  };
  for (const id of sent.samples) {
    out.sampledTokenIds[id] = [tokenFor(id)];
    out.logprobs[id] = [{ logprob: -0.5, top: [] }];
  }
  const outputs = sched.updateFromOutput(sent.plan, out);
  sched.kv.pool.checkInvariants();
  return outputs;
}

describe("Scheduler with pipelined steps", () => {
  it("schedules a decode while the sample it needs is still in flight, and applies outputs in order", () => {
    const sched = createScheduler();
    const [r] = createRequests(1, { numTokens: 5, maxTokens: 8 });
    sched.addRequest(r);
    const s1 = send(sched);
    assert.deepEqual(s1.samples, ["req-0"]);
    assert.equal(r.numPendingSamples, 1);
    const s2 = send(sched); // before s1's output: the decode of the pending token
    assert.deepEqual(s2.plan.numScheduledTokens, { "req-0": 1 });
    assert.equal(s2.plan.scheduledCachedReqs[0].numComputedTokens, 5);
    assert.equal(r.numPendingSamples, 2);
    let n = 100;
    assert.deepEqual(
      receive(sched, s1, () => n++).map((o) => o.newTokenIds),
      [[100]],
    );
    const s3 = send(sched);
    assert.equal(s3.plan.scheduledCachedReqs[0].numComputedTokens, 6);
    assert.deepEqual(
      receive(sched, s2, () => n++).map((o) => o.newTokenIds),
      [[101]],
    );
    receive(sched, s3, () => n++);
    assert.deepEqual(r.allTokenIds.slice(5), [100, 101, 102]);
    assert.equal(r.numPendingSamples, 0);
    assert.equal(r.numComputedTokens, 7, "the last sampled token is known but not yet computed");
  });

  it("prompts first: a prompt step sent while a decode sample is in flight leaves that decode for later", () => {
    const sched = createScheduler({ mixPrefillAndDecode: false });
    const [a] = createRequests(1, { numTokens: 5, maxTokens: 3, idPrefix: "a" });
    sched.addRequest(a);
    const s1 = send(sched);
    const [b] = createRequests(1, { numTokens: 4, maxTokens: 2, idPrefix: "b" });
    sched.addRequest(b);
    const s2 = send(sched); // before s1's output: b's prompt alone, a's pending sample waits
    assert.deepEqual(s2.plan.numScheduledTokens, { "b-0": 4 });
    assert.equal(a.numPendingSamples, 1);
    const s3 = send(sched); // both decode their pending samples
    assert.deepEqual(s3.plan.numScheduledTokens, { "a-0": 1, "b-0": 1 });
    let n = 100;
    for (const s of [s1, s2, s3]) receive(sched, s, () => n++);
    assert.deepEqual(a.allTokenIds.slice(5), [100, 102]);
    assert.deepEqual(b.allTokenIds.slice(4), [101, 103]);
    assert.equal(b.status, "finished");
  });

  it("never schedules past max tokens: the pending samples already reach it", () => {
    const sched = createScheduler();
    const [r] = createRequests(1, { numTokens: 4, maxTokens: 2 });
    sched.addRequest(r);
    const s1 = send(sched);
    const s2 = send(sched);
    const s3 = send(sched);
    assert.equal(s3.plan.totalNumScheduledTokens, 0, "two samples in flight are all max_tokens=2 allows");
    assert.deepEqual(receive(sched, s1)[0].finishReason, null);
    const last = receive(sched, s2);
    assert.equal(last[0].finishReason, "length");
    assert.equal(r.numOutputTokens, 2);
    assert.deepEqual(send(sched).plan.finishedReqIds, ["req-0"]);
  });

  it("a stop token found late ends the request; the step already sent for it is ignored", () => {
    const sched = createScheduler();
    const [r, other] = createRequests(2, { numTokens: 4, maxTokens: 10 });
    sched.addRequest(r);
    sched.addRequest(other);
    const s1 = send(sched);
    const s2 = send(sched);
    assert.deepEqual(Object.keys(s2.plan.numScheduledTokens).sort(), ["req-0", "req-1"]);
    const out1 = receive(sched, s1, (id) => (id === "req-0" ? EOS : 7));
    assert.equal(out1.find((o) => o.reqId === "req-0")!.finishReason, "eos_token");
    const s3 = send(sched);
    assert.deepEqual(s3.plan.finishedReqIds, ["req-0"]);
    assert.deepEqual(Object.keys(s3.plan.numScheduledTokens), ["req-1"]);
    const out2 = receive(sched, s2);
    assert.deepEqual(
      out2.map((o) => o.reqId),
      ["req-1"],
      "the discarded step's token for the finished request never surfaces",
    );
    assert.deepEqual(r.allTokenIds.slice(4), [EOS]);
    receive(sched, s3);
    assert.equal(other.numOutputTokens, 3);
  });

  it("ignores outputs of steps sent before a request was preempted, then recomputes it", () => {
    // 4 blocks of 4 tokens: two requests of 7 prompt tokens fill them after one decode each.
    const sched = createScheduler({ numBlocks: 4, blockSize: 4 });
    const [a, b] = createRequests(2, { numTokens: 7, maxTokens: 10 });
    sched.addRequest(a);
    sched.addRequest(b);
    const s1 = send(sched); // both prefilled: 2 blocks each
    const s2 = send(sched); // both decode position 7 (still in block 2)
    receive(sched, s1);
    const s3 = send(sched); // position 8 needs a 5th block: b (the newest) is preempted
    assert.deepEqual(s3.plan.preemptedReqIds, ["req-1"]);
    assert.equal(b.status, "preempted");
    assert.equal(b.numPendingSamples, 0);
    const out2 = receive(sched, s2);
    assert.deepEqual(
      out2.map((o) => o.reqId),
      ["req-0"],
      "b's token from the step sent before its preemption is dropped",
    );
    assert.equal(b.numOutputTokens, 1, "b keeps only the token whose output arrived before the preemption");
    receive(sched, s3);
    assert.equal(a.numOutputTokens, 3);
  });

  it("an output for an earlier request with the same id does not reach the new one", () => {
    const sched = createScheduler();
    const [old] = createRequests(1, { numTokens: 4, maxTokens: 10, idPrefix: "x" });
    sched.addRequest(old);
    const s1 = send(sched);
    const s2 = send(sched);
    sched.finishRequests(["x-0"], "abort");
    const [fresh] = createRequests(1, { numTokens: 4, maxTokens: 10, idPrefix: "x" });
    sched.addRequest(fresh);
    receive(sched, s1);
    receive(sched, s2);
    assert.equal(fresh.numOutputTokens, 0);
    const s3 = send(sched);
    assert.deepEqual(s3.plan.finishedReqIds, ["x-0"]);
    assert.deepEqual(
      s3.plan.scheduledNewReqs.map((r) => r.reqId),
      ["x-0"],
    );
    receive(sched, s3);
    assert.equal(fresh.numOutputTokens, 1);
  });

  it("with prefix caching, a block whose last token is still pending is not hashed", () => {
    const sched = createScheduler({ blockSize: 4, enablePrefixCaching: true });
    const [r] = createRequests(1, { numTokens: 7, maxTokens: 10 });
    sched.addRequest(r);
    send(sched);
    send(sched); // computes position 7, whose token (sampled by the first step) is unknown here
    assert.equal(r.numComputedTokens, 8);
    sched.finishRequests([r.reqId], "abort"); // freed with 8 positions computed but 7 tokens known
    const [twin] = createRequests(1, { prompt: [...r.allTokenIds, 5], maxTokens: 4 });
    sched.addRequest(twin);
    const s = send(sched);
    assert.equal(
      s.plan.scheduledNewReqs.find((q) => q.reqId === twin.reqId)!.numComputedTokens,
      4,
      "only the block of known tokens hits the cache",
    );
  });

  it("with prefix caching, blocks hit once their tokens have come back", () => {
    const sched = createScheduler({ blockSize: 4, enablePrefixCaching: true });
    const [r] = createRequests(1, { numTokens: 7, maxTokens: 10 });
    sched.addRequest(r);
    const s1 = send(sched);
    const s2 = send(sched);
    receive(sched, s1);
    receive(sched, s2);
    receive(sched, send(sched)); // positions 0..8 computed, 9 tokens known
    const [twin] = createRequests(1, { prompt: r.allTokenIds.slice(0, 9), maxTokens: 4, idPrefix: "twin" });
    sched.addRequest(twin);
    const s4 = send(sched);
    assert.equal(s4.plan.scheduledNewReqs.find((q) => q.reqId === twin.reqId)!.numComputedTokens, 8);
  });
});
