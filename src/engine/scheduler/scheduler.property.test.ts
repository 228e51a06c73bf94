// Property test: random configurations and workloads (shared prefixes, aborts at random times, a KV
// cache too small for the load, prompts mixed with decodes or run first) never break the scheduler's promises: the budget and batch limits
// hold, the executor-side view of each request stays consistent, KV bookkeeping balances, and every
// request that is not aborted finishes with exactly the tokens it was given.
import assert from "node:assert/strict";
import { it } from "node:test";
import fc from "fast-check";
import { createRequests, createScheduler, step } from "../../../test/engine/helpers.ts";

const workload = fc.record({
  blockSize: fc.integer({ min: 1, max: 8 }),
  extraBlocks: fc.integer({ min: 0, max: 20 }),
  budget: fc.integer({ min: 1, max: 40 }),
  maxNumSeqs: fc.integer({ min: 1, max: 6 }),
  prefixCaching: fc.boolean(),
  mixPrefillAndDecode: fc.boolean(),
  reqs: fc.array(
    fc.record({
      sharedPrefix: fc.integer({ min: 0, max: 12 }),
      ownTokens: fc.integer({ min: 1, max: 12 }),
      maxTokens: fc.integer({ min: 1, max: 10 }),
      arriveAt: fc.integer({ min: 0, max: 15 }),
      abortAt: fc.option(fc.integer({ min: 0, max: 40 }), { nil: null }),
    }),
    { minLength: 1, maxLength: 10 },
  ),
});

it("scheduler invariants hold for random workloads", () => {
  fc.assert(
    fc.property(workload, (w) => {
      const longest = Math.max(...w.reqs.map((r) => r.sharedPrefix + r.ownTokens + r.maxTokens));
      const numBlocks = Math.ceil(longest / w.blockSize) + w.extraBlocks;
      const sched = createScheduler({
        blockSize: w.blockSize,
        numBlocks,
        maxNumBatchedTokens: w.budget,
        maxNumSeqs: w.maxNumSeqs,
        enablePrefixCaching: w.prefixCaching,
        mixPrefillAndDecode: w.mixPrefillAndDecode,
        maxModelLen: numBlocks * w.blockSize,
      });
      const reqs = w.reqs.map((spec, i) => {
        const prompt = [
          ...Array.from({ length: spec.sharedPrefix }, (_, j) => 500 + j),
          ...Array.from({ length: spec.ownTokens }, (_, j) => 10_000 * (i + 1) + j),
        ];
        return { spec, req: createRequests(1, { prompt, maxTokens: spec.maxTokens, idPrefix: `p${i}` })[0] };
      });
      const seen = new Set<string>();
      const executorComputed = new Map<string, number>();
      const token = (id: string, n: number) => 100 + Number(id.slice(1).split("-")[0]) * 50 + n;
      for (let t = 0; t < 400; t++) {
        for (const { spec, req } of reqs) {
          if (spec.arriveAt === t) sched.addRequest(req);
          if (spec.abortAt === t && req.status !== "finished" && t >= spec.arriveAt) {
            sched.finishRequests([req.reqId], "abort");
          }
        }
        if (t > 15 && !sched.hasPendingWork) break;
        const { plan } = step(sched, token);
        assert.ok(plan.totalNumScheduledTokens <= w.budget);
        assert.ok(sched.numRunning <= w.maxNumSeqs);
        for (const id of plan.finishedReqIds) executorComputed.delete(id);
        for (const r of plan.scheduledNewReqs) {
          assert.ok(!seen.has(r.reqId), `${r.reqId} sent as new twice`);
          seen.add(r.reqId);
          executorComputed.set(r.reqId, r.numComputedTokens);
        }
        for (const r of plan.scheduledCachedReqs) {
          if (!r.resumedFromPreemption) assert.equal(r.numComputedTokens, executorComputed.get(r.reqId));
          executorComputed.set(r.reqId, r.numComputedTokens);
        }
        for (const [id, n] of Object.entries(plan.numScheduledTokens)) {
          executorComputed.set(id, executorComputed.get(id)! + n);
        }
      }
      assert.equal(sched.kv.pool.numFreeBlocks, numBlocks, "every block is free at the end");
      for (const { spec, req } of reqs) {
        assert.equal(req.status, "finished", `${req.reqId} did not finish`);
        if (req.finishReason === "abort") continue;
        const expected = Array.from({ length: spec.maxTokens }, (_, n) => token(req.reqId, n));
        assert.deepEqual(req.allTokenIds.slice(req.numPromptTokens), expected);
      }
    }),
    { numRuns: 300 },
  );
});
