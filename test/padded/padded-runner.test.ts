// The CPU padded runner's KV moves: merging two prefilled sub-batches and trimming a finished row re-pad
// each row's KV into its new region unchanged (every layer, every position), left-aligned so all rows
// end on one column; the slot arena compacts when fragmented. Driven by the real PaddedScheduler.
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { PaddedScheduler } from "../../src/engine/padded/padded-scheduler.ts";
import { Request } from "../../src/engine/request.ts";
import { createInThreadCpuExecutor, type InThreadCpuExecutor } from "../../src/executor/cpu/index.ts";
import type { CpuPaddedRunner } from "../../src/executor/cpu/padded-runner.ts";
import { SlotArena } from "../../src/executor/cpu/slot-arena.ts";
import type { SchedulerOutput } from "../../src/executor/types.ts";
import { REPO_ROOT } from "../engine/fixtures.ts";
import { samplingSettings } from "../engine/helpers.ts";

const MODEL = join(REPO_ROOT, "models", "zoo", "llama");

async function setup(numSlots: number) {
  const ex = createInThreadCpuExecutor({ modelDir: MODEL, kvLayout: "padded", kvCacheBytes: 4 << 20 });
  const info = await ex.load();
  const prof = await ex.profile();
  assert.equal(prof.kvLayout, "padded");
  assert.equal(prof.blockSize, 1);
  await ex.initCache(numSlots);
  const s = new PaddedScheduler({
    maxNumSeqs: 8,
    maxNumBatchedTokens: 4096,
    numSlots,
    maxModelLen: info.maxModelLen,
    maxSparsity: 1,
    maxSplits: 3,
  });
  return { ex, runner: ex.runner as CpuPaddedRunner, s };
}

function req(id: string, len: number, maxTokens: number): Request {
  const prompt = Array.from({ length: len }, (_, i) => 3 + ((i * 7 + id.length * 13) % 90));
  return new Request({
    reqId: id,
    promptTokenIds: prompt,
    sampling: samplingSettings({ ignoreEos: true }),
    maxTokens,
  });
}

async function step(ex: InThreadCpuExecutor, s: PaddedScheduler): Promise<SchedulerOutput> {
  const plan = s.schedule();
  s.updateFromOutput(plan, await ex.execute(plan));
  return plan;
}

/** K and V of every layer at the row's first n positions, copied out. */
function rowKv(runner: CpuPaddedRunner, id: string, n: number): Float32Array[] {
  const kv = (
    runner as unknown as { fwd: { kv: { k: Float32Array[]; v: Float32Array[]; slotWidth: number } } }
  ).fwd.kv;
  const st = runner.state(id)!;
  const w = kv.slotWidth;
  const out: Float32Array[] = [];
  for (const cache of [...kv.k, ...kv.v]) {
    for (let p = 0; p < n; p++) out.push(cache.slice(st.blockTable[p] * w, (st.blockTable[p] + 1) * w));
  }
  return out;
}

describe("CPU padded runner: merge and trim move KV intact", () => {
  it("merges two prefilled sub-batches into one left-padded region, then trims a finished row", async () => {
    const { ex, runner, s } = await setup(4000);
    s.addRequest(req("a", 12, 3));
    s.addRequest(req("b", 5, 8));
    await step(ex, s); // prefill {a, b}
    s.addRequest(req("c", 9, 8));
    const p2 = await step(ex, s); // decode {a, b}, prefill {c}
    const before = new Map(
      ["a", "b", "c"].map((id) => [id, rowKv(runner, id, runner.state(id)!.tokenIds.length - 1)]),
    );
    const oldIds = [...p2.padded!.decode, ...p2.padded!.prefill].map((b) => b.batchId);
    const p3 = await step(ex, s); // merge {a, c, b} and decode it
    const merged = p3.padded!.decode[0];
    assert.deepEqual(merged.reqIds, ["a", "c", "b"]);
    assert.ok(!oldIds.includes(merged.batchId));
    const region = runner.regionOf(merged.batchId)!;
    for (const old of oldIds) assert.equal(runner.regionOf(old), undefined, `region ${old} freed`);
    assert.equal(runner.slotsInUse, region.size, "only the merged region is left");
    assert.equal(region.size, 3 * merged.capacity);
    // a has KV 13, c 9, b 6 before this step: pads 0, 4, 7, so every row's last token shares a column.
    const pads = merged.reqIds.map((id) => runner.state(id)!.pad);
    assert.deepEqual(pads, [0, 4, 7]);
    merged.reqIds.forEach((id, r) => {
      const st = runner.state(id)!;
      assert.equal(st.blockTable[0], region.base + r * merged.capacity + pads[r]);
      const n = before.get(id)!.length / (2 * 2); // 2 layers x (K, V)
      assert.deepEqual(rowKv(runner, id, n), before.get(id), `row ${id}: KV unchanged by the merge`);
    });
    assert.equal(s.getRequest("a"), undefined, "a finished at 3 tokens");
    const keep = new Map(
      ["b", "c"].map((id) => [id, rowKv(runner, id, runner.state(id)!.tokenIds.length - 1)]),
    );
    const p4 = await step(ex, s); // trim a
    assert.deepEqual(p4.finishedReqIds, ["a"]);
    const trimmed = p4.padded!.decode[0];
    assert.deepEqual(trimmed.reqIds, ["c", "b"]);
    assert.equal(runner.state("a"), undefined);
    assert.deepEqual(
      trimmed.reqIds.map((id) => runner.state(id)!.pad),
      [0, 3],
      "the padding only a needed is gone",
    );
    assert.equal(runner.slotsInUse, 2 * trimmed.capacity);
    for (const id of ["b", "c"]) {
      const n = keep.get(id)!.length / 4;
      assert.deepEqual(rowKv(runner, id, n), keep.get(id), `row ${id}: KV unchanged by the trim`);
    }
    while (s.hasPendingWork) await step(ex, s);
    assert.equal(runner.slotsInUse, 0);
  });

  it("compacts a fragmented arena, moving live regions with their KV intact", async () => {
    const { ex, runner } = await setup(40);
    const sampling = samplingSettings({ ignoreEos: true });
    const prompt = (seed: number) => Array.from({ length: 5 }, (_, i) => 3 + seed * 11 + i);
    const plan = (
      stepId: number,
      layout: NonNullable<SchedulerOutput["padded"]>,
      finished: string[] = [],
    ): SchedulerOutput => {
      const p: SchedulerOutput = {
        stepId,
        scheduledNewReqs: [],
        scheduledCachedReqs: [],
        numScheduledTokens: {},
        totalNumScheduledTokens: 0,
        finishedReqIds: finished,
        preemptedReqIds: [],
        padded: layout,
      };
      for (const b of layout.prefill) {
        for (const id of b.reqIds) {
          p.scheduledNewReqs.push({
            reqId: id,
            promptTokenIds: prompt(id.charCodeAt(0)),
            sampling,
            blockIds: [],
            numComputedTokens: 0,
          });
          p.numScheduledTokens[id] = 5;
        }
      }
      for (const b of layout.decode) {
        for (const id of b.reqIds) {
          const n = runner.state(id)!.tokenIds.length - 1;
          p.scheduledCachedReqs.push({
            reqId: id,
            newBlockIds: [],
            numComputedTokens: n,
            resumedFromPreemption: false,
          });
          p.numScheduledTokens[id] = 1;
        }
      }
      return p;
    };
    const sb = (batchId: number, reqIds: string[], capacity = 10) => ({ batchId, reqIds, capacity });
    await ex.execute(plan(0, { decode: [], prefill: [sb(1, ["a"]), sb(2, ["b"]), sb(3, ["c"])] }));
    assert.deepEqual(
      [1, 2, 3].map((id) => runner.regionOf(id)!.base),
      [0, 10, 20],
    );
    // a finishes: free slots are [0, 10) and [30, 40), 20 in all but no 15 in a row.
    await ex.execute(plan(1, { decode: [sb(2, ["b"]), sb(3, ["c"])], prefill: [] }, ["a"]));
    const before = new Map(["b", "c"].map((id) => [id, rowKv(runner, id, 6)])); // KV of 5 prompt + 1 fed
    await ex.execute(plan(2, { decode: [sb(2, ["b"]), sb(3, ["c"])], prefill: [sb(4, ["d"], 15)] }));
    assert.deepEqual(
      [2, 3, 4].map((id) => runner.regionOf(id)!.base),
      [0, 10, 20],
      "slid down, then allocated",
    );
    for (const id of ["b", "c"]) {
      assert.equal(runner.state(id)!.blockTable[0], id === "b" ? 0 : 10);
      assert.deepEqual(rowKv(runner, id, 6), before.get(id), `row ${id}: KV moved intact`);
    }
    assert.equal(runner.slotsInUse, 35);
    await assert.rejects(
      ex.execute(
        plan(3, { decode: [sb(2, ["b"]), sb(3, ["c"]), sb(4, ["d"], 15)], prefill: [sb(5, ["e"], 6)] }),
      ),
      /KV arena full: sub-batch 5 needs 6 slots, 5 free/,
    );
  });

  it("rejects a paged plan with a clear error", async () => {
    const { ex } = await setup(100);
    const plan: SchedulerOutput = {
      stepId: 0,
      scheduledNewReqs: [],
      scheduledCachedReqs: [],
      numScheduledTokens: {},
      totalNumScheduledTokens: 0,
      finishedReqIds: [],
      preemptedReqIds: [],
    };
    await assert.rejects(
      ex.execute(plan),
      /padded sub-batches \(rolling_batch=scheduler\) and got a paged plan/,
    );
  });
});

describe("SlotArena", () => {
  it("first fit, free, and compaction that slides regions down in order", () => {
    const a = new SlotArena(10);
    assert.equal(a.alloc(1, 3)!.base, 0);
    assert.equal(a.alloc(2, 3)!.base, 3);
    assert.equal(a.alloc(3, 3)!.base, 6);
    a.free(2);
    assert.equal(a.alloc(4, 4), null, "4 free slots, but not contiguous");
    assert.equal(a.alloc(5, 2)!.base, 3, "first fit");
    a.free(1);
    const moves: Array<[number, number, number]> = [];
    a.compact((r, base) => moves.push([r.id, r.base, base]));
    assert.deepEqual(moves, [
      [5, 3, 0],
      [3, 6, 2],
    ]);
    assert.equal(a.alloc(4, 5)!.base, 5);
    assert.equal(a.used, 10);
    assert.throws(() => a.free(1), /not allocated/);
    assert.throws(() => a.alloc(6, 0), /size/);
  });
});
