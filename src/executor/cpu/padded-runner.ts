// The CPU executor's padded path (rolling_batch=scheduler): each sub-batch is one contiguous KV region
// of rows x capacity slots in the same backend memory the paged cache uses, rows left-padded so they end
// on one column. A step repacks new decode sub-batches (merge / split / trim), frees unused regions,
// decodes each sub-batch with one forward call, then prefills each new sub-batch with one forward call
// over its padded prompts (pad tokens are computed, as HF does; attention skips them, as its mask does).
// Invariant: a row's real position p lives at slot base + row*capacity + pad + p; sampling, contrastive
// look-ahead and logprobs are the paged runner's own functions, so outputs equal the paged engine's.
import type { PaddedSubBatch } from "../padded-types.ts";
import type { CacheProfile, ModelInfo, ModelRunnerOutput, SchedulerOutput, TokenLogprobs } from "../types.ts";
import { contrastiveStep } from "./contrastive.ts";
import type { ForwardPass, SeqWork } from "./forward.ts";
import { createForward, DEFAULT_GROUP_TOKENS } from "./model.ts";
import {
  type CpuExecutorOptions,
  CpuModelRunner,
  type RequestState,
  SCRATCH_BLOCKS,
} from "./model-runner.ts";
import { logSoftmax, processLogits, sampleToken, tokenLogprobs } from "./sampler.ts";
import { type ArenaRegion, SlotArena } from "./slot-arena.ts";

/** A row's state: the paged runner's, with blockTable = the slot of each position (block size 1). */
export interface RowState extends RequestState {
  batchId: number;
  row: number;
  pad: number;
}

interface Region {
  capacity: number;
  /** Row ids in layout order, finished ones included until the region is freed. */
  rows: string[];
}

// Pad positions are computed but never attended to by real tokens, so any valid id does.
const PAD_TOKEN = 0;

export class CpuPaddedRunner {
  private readonly paged: CpuModelRunner;
  private fwd: ForwardPass | null = null;
  private arena: SlotArena | null = null;
  private readonly regions = new Map<number, Region>();
  private readonly states = new Map<string, RowState>();
  private readonly blockSize: number;

  constructor(readonly opts: CpuExecutorOptions) {
    this.paged = new CpuModelRunner(opts);
    this.blockSize = opts.blockSize ?? 16;
  }

  load(): ModelInfo {
    return this.paged.load();
  }

  /** The paged budget in token slots: one "block" is one token (same backend memory reservation). */
  profile(): CacheProfile {
    const p = this.paged.profile();
    return {
      numBlocks: p.numBlocks * p.blockSize,
      blockSize: 1,
      bytesPerBlock: p.bytesPerBlock / p.blockSize,
      kvLayout: "padded",
    };
  }

  initCache(numSlots: number): void {
    if (!Number.isInteger(numSlots) || numSlots <= 0)
      throw new Error(`initCache: bad slot count ${numSlots}`);
    const groupTokens = this.opts.maxGroupTokens ?? DEFAULT_GROUP_TOKENS;
    const m = this.paged.loadedModel;
    this.fwd = createForward(m, numSlots, 1, SCRATCH_BLOCKS * this.blockSize, groupTokens);
    this.arena = new SlotArena(numSlots);
    this.regions.clear();
    this.states.clear();
  }

  /** Releases the model's helper threads; the runner is unusable afterwards. */
  close(): void {
    this.paged.close();
    this.fwd = null;
    this.arena = null;
  }

  /** Read-only views for tests. */
  state(reqId: string): RowState | undefined {
    return this.states.get(reqId);
  }
  regionOf(batchId: number): (ArenaRegion & Region) | undefined {
    const a = this.arena?.get(batchId);
    const r = this.regions.get(batchId);
    return a && r ? { ...a, ...r } : undefined;
  }
  get slotsInUse(): number {
    return this.arena?.used ?? 0;
  }

  execute(plan: SchedulerOutput): ModelRunnerOutput {
    const fwd = this.fwd;
    if (!fwd || !this.arena) throw new Error("CPU executor: initCache() was not called");
    const layout = plan.padded;
    if (!layout) {
      throw new Error(
        "this CPU executor runs padded sub-batches (rolling_batch=scheduler) and got a paged plan",
      );
    }
    if (plan.preemptedReqIds.length > 0) throw new Error("the padded path never preempts");
    for (const id of plan.finishedReqIds) this.states.delete(id);
    const out: ModelRunnerOutput = {
      stepId: plan.stepId,
      sampledTokenIds: {},
      logprobs: {},
      promptLogprobs: {},
    };
    const fed = new Map(plan.scheduledCachedReqs.map((c) => [c.reqId, c.numComputedTokens]));
    for (const b of layout.decode) if (!this.regions.has(b.batchId)) this.repack(b);
    const keep = new Set([...layout.decode, ...layout.prefill].map((b) => b.batchId));
    for (const id of [...this.regions.keys()]) {
      if (keep.has(id)) continue;
      this.regions.delete(id);
      this.arena.free(id);
    }
    for (const b of layout.decode) this.decode(fwd, b, fed, out);
    const news = new Map(plan.scheduledNewReqs.map((r) => [r.reqId, r]));
    for (const b of layout.prefill) this.prefill(fwd, b, news, out);
    return out;
  }

  private row(reqId: string): RowState {
    const st = this.states.get(reqId);
    if (!st) throw new Error(`request ${reqId} is scheduled but unknown to the executor`);
    return st;
  }

  /** A region of rows x capacity slots, compacting the arena when free space is fragmented. */
  private allocate(batchId: number, rows: string[], capacity: number): ArenaRegion {
    const arena = this.arena!;
    const size = rows.length * capacity;
    let a = arena.alloc(batchId, size);
    if (a === null) {
      arena.compact((r, base) => this.moveRegion(r, base));
      a = arena.alloc(batchId, size);
    }
    if (a === null) {
      throw new Error(
        `KV arena full: sub-batch ${batchId} needs ${size} slots, ${arena.numSlots - arena.used} free`,
      );
    }
    this.regions.set(batchId, { capacity, rows });
    return a;
  }

  private moveRegion(r: ArenaRegion, base: number): void {
    const kv = this.fwd!.kv;
    const w = kv.slotWidth;
    for (let l = 0; l < kv.numLayers; l++) {
      kv.k[l].copyWithin(base * w, r.base * w, (r.base + r.size) * w);
      kv.v[l].copyWithin(base * w, r.base * w, (r.base + r.size) * w);
    }
    for (const st of this.states.values()) {
      if (st.batchId === r.id) st.blockTable = this.slotList(base, this.regions.get(r.id)!.capacity, st);
    }
  }

  private slotList(base: number, capacity: number, st: { row: number; pad: number }): number[] {
    const start = base + st.row * capacity + st.pad;
    return Array.from({ length: capacity - st.pad }, (_, p) => start + p);
  }

  /** Builds a decode sub-batch from rows of current regions (merge, split or trim): re-pads their KV. */
  private repack(b: PaddedSubBatch): void {
    const rows = b.reqIds.map((id) => this.row(id));
    const lens = rows.map((st) => st.tokenIds.length - 1);
    const width = Math.max(...lens);
    if (b.capacity <= width)
      throw new Error(`sub-batch ${b.batchId}: capacity ${b.capacity} <= width ${width}`);
    const dst = this.allocate(b.batchId, [...b.reqIds], b.capacity);
    const kv = this.fwd!.kv;
    const w = kv.slotWidth;
    rows.forEach((st, r) => {
      const src = st.blockTable[0]; // the source region may have moved during allocate: read it now
      const pad = width - lens[r];
      const to = dst.base + r * b.capacity + pad;
      for (let l = 0; l < kv.numLayers; l++) {
        kv.k[l].copyWithin(to * w, src * w, (src + lens[r]) * w);
        kv.v[l].copyWithin(to * w, src * w, (src + lens[r]) * w);
      }
      Object.assign(st, { batchId: b.batchId, row: r, pad });
      st.blockTable = this.slotList(dst.base, b.capacity, st);
    });
  }

  private decode(
    fwd: ForwardPass,
    b: PaddedSubBatch,
    fed: Map<string, number>,
    out: ModelRunnerOutput,
  ): void {
    const region = this.regions.get(b.batchId)!;
    const work: SeqWork[] = b.reqIds.map((id) => {
      const st = this.row(id);
      const kvLen = st.tokenIds.length - 1;
      if (st.batchId !== b.batchId || !region.rows.includes(id))
        throw new Error(`request ${id} is not a row of sub-batch ${b.batchId}`);
      if (fed.get(id) !== kvLen) throw new Error(`request ${id}: plan and executor disagree on its length`);
      if (kvLen + 1 > st.blockTable.length) throw new Error(`request ${id} outgrew sub-batch ${b.batchId}`);
      const contrastive = st.sampling.strategy === "contrastive";
      return {
        tokens: [st.tokenIds[kvLen]],
        startPos: kvLen,
        blockTable: st.blockTable,
        logits: "last",
        hidden: contrastive,
      };
    });
    const results = fwd.forward(work);
    b.reqIds.forEach((id, i) => {
      if (work[i].hidden) this.row(id).hidden.push(...results[i].hidden);
    });
    this.sample(
      fwd,
      b.reqIds,
      results.map((r) => r.logits[0]),
      out,
    );
  }

  private prefill(
    fwd: ForwardPass,
    b: PaddedSubBatch,
    news: Map<string, SchedulerOutput["scheduledNewReqs"][number]>,
    out: ModelRunnerOutput,
  ): void {
    const reqs = b.reqIds.map((id) => {
      const r = news.get(id);
      if (r?.numComputedTokens !== 0) throw new Error(`prefill row ${id} is not a new request from 0`);
      return r;
    });
    const width = Math.max(...reqs.map((r) => r.promptTokenIds.length));
    if (b.capacity < width)
      throw new Error(`sub-batch ${b.batchId}: capacity ${b.capacity} < prompt ${width}`);
    const dst = this.allocate(b.batchId, [...b.reqIds], b.capacity);
    const work: SeqWork[] = [];
    const real: number[] = [];
    reqs.forEach((r, row) => {
      const pad = width - r.promptTokenIds.length;
      const st: RowState = {
        tokenIds: [...r.promptTokenIds],
        promptLen: r.promptTokenIds.length,
        blockTable: [],
        sampling: r.sampling,
        hidden: [],
        batchId: b.batchId,
        row,
        pad,
      };
      st.blockTable = this.slotList(dst.base, b.capacity, st);
      this.states.set(r.reqId, st);
      if (pad > 0) {
        const start = dst.base + row * b.capacity;
        const blockTable = Array.from({ length: pad }, (_, p) => start + p);
        work.push({
          tokens: new Array(pad).fill(PAD_TOKEN),
          startPos: 0,
          blockTable,
          logits: "none",
          hidden: false,
        });
      }
      real.push(work.length);
      work.push({
        tokens: st.tokenIds,
        startPos: 0,
        blockTable: st.blockTable,
        logits: r.sampling.promptLogprobs ? "all" : "last",
        hidden: r.sampling.strategy === "contrastive",
      });
    });
    const results = fwd.forward(work);
    const last: Float32Array[] = [];
    b.reqIds.forEach((id, i) => {
      const st = this.row(id);
      const res = results[real[i]];
      st.hidden.push(...res.hidden);
      if (st.sampling.promptLogprobs) out.promptLogprobs[id] = promptLogprobs(st, res.logits);
      last.push(res.logits[res.logits.length - 1]);
    });
    this.sample(fwd, b.reqIds, last, out);
  }

  /** Greedy / sample per row, then one contrastive look-ahead for the contrastive rows. */
  private sample(fwd: ForwardPass, ids: string[], raws: Float32Array[], out: ModelRunnerOutput): void {
    const contrastive: Array<{ reqId: string; processed: Float64Array; raw: Float32Array }> = [];
    ids.forEach((reqId, i) => {
      const st = this.row(reqId);
      const processed = processLogits(raws[i], st.sampling, st.tokenIds, st.promptLen);
      if (st.sampling.strategy === "contrastive") contrastive.push({ reqId, processed, raw: raws[i] });
      else
        emit(out, reqId, st, raws[i], sampleToken(processed, st.sampling, st.tokenIds.length - st.promptLen));
    });
    if (contrastive.length === 0) return;
    const picks = contrastiveStep(fwd, this.states, contrastive);
    for (const { reqId, raw } of contrastive) emit(out, reqId, this.row(reqId), raw, picks.get(reqId)!);
  }
}

function emit(out: ModelRunnerOutput, reqId: string, st: RowState, raw: Float32Array, token: number): void {
  out.sampledTokenIds[reqId] = [token];
  out.logprobs[reqId] = [tokenLogprobs(logSoftmax(raw), token, st.sampling.numTopLogprobs)];
  st.tokenIds.push(token);
}

/** Entries for prompt tokens 1..promptLen-1, led by null for token 0 (logits at i score token i+1). */
function promptLogprobs(st: RowState, logits: Float32Array[]): Array<TokenLogprobs | null> {
  const entries: Array<TokenLogprobs | null> = [null];
  for (let pos = 0; pos + 1 < st.promptLen; pos++) {
    entries.push(tokenLogprobs(logSoftmax(logits[pos]), st.tokenIds[pos + 1], st.sampling.numTopLogprobs));
  }
  return entries;
}
