// The CPU executor's step logic, synchronous and in-thread: keeps per-request state (token ids, block
// table), turns a SchedulerOutput into one batched forward over paged KV, and samples where a request's
// computed tokens reach its full length. Invariants: tokens the runner samples are appended to its own
// state (the scheduler never re-sends them); a preempted request keeps its prompt length and sampling
// settings but loses its blocks, and a resumed one takes allTokenIds and the full block table.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type {
  CacheProfile,
  ModelInfo,
  ModelRunnerOutput,
  SamplingSettings,
  SchedulerOutput,
  TokenLogprobs,
} from "../types.ts";
import { contrastiveStep } from "./contrastive.ts";
import type { ForwardPass, SeqWork } from "./forward.ts";
import type { BackendName } from "./kernels/math-backend.ts";
import { KvCache } from "./kv-cache.ts";
import { createForward, DEFAULT_GROUP_TOKENS, type LoadedModel, loadModel, readConfig } from "./model.ts";
import { logSoftmax, processLogits, sampleToken, tokenLogprobs } from "./sampler.ts";
import type { WeightDtype } from "./weights.ts";

export interface CpuExecutorOptions {
  modelDir: string;
  /** Weight precision emulated (weights rounded to it; math is fp32). Default: the checkpoint's dtype. */
  dtype?: WeightDtype;
  /** KV cache budget; profile() turns it into a block count. Default 256 MiB. */
  kvCacheBytes?: number;
  /** Cap on ModelInfo.maxModelLen (the model's own limit applies too). */
  maxModelLen?: number;
  /** Tokens per KV block. Default 16. */
  blockSize?: number;
  /** Matmul backend: "wasm" (SIMD128, default) or "ts" (reference). */
  backend?: BackendName;
  /** Rows per forward group; bounds activation memory. Default 128. */
  maxGroupTokens?: number;
  /** "padded": run rolling_batch=scheduler plans (padded-runner.ts) instead of paged ones. */
  kvLayout?: "paged" | "padded";
  /** Threads for large matmuls (WASM backend): 1 (default) or 2. See bench/cpu-tokens.ts --threads. */
  threads?: number;
}

export interface RequestState {
  tokenIds: number[];
  promptLen: number;
  blockTable: number[];
  sampling: SamplingSettings;
  /** Last-layer hidden state of positions 0.. (contrastive search only). */
  hidden: Float32Array[];
}

const DEFAULT_KV_BYTES = 256 * 1024 * 1024;

/** Blocks past the engine's numBlocks that the runner keeps for contrastive look-ahead. */
export const SCRATCH_BLOCKS = 32;

export class CpuModelRunner {
  private model: LoadedModel | null = null;
  private fwd: ForwardPass | null = null;
  private readonly states = new Map<string, RequestState>();
  private readonly blockSize: number;

  constructor(readonly opts: CpuExecutorOptions) {
    this.blockSize = opts.blockSize ?? 16;
  }

  load(): ModelInfo {
    const m = loadModel(this.opts.modelDir, {
      dtype: this.opts.dtype,
      backend: this.opts.backend,
      maxGroupTokens: this.opts.maxGroupTokens,
      kvCacheBytes: this.opts.kvCacheBytes ?? DEFAULT_KV_BYTES,
      numScratchBlocks: SCRATCH_BLOCKS,
      blockSize: this.blockSize,
      threads: this.opts.threads,
    });
    this.model = m;
    const cfg = readConfig(this.opts.modelDir);
    let eos = m.spec.eosTokenIds;
    try {
      const gen = JSON.parse(readFileSync(join(this.opts.modelDir, "generation_config.json"), "utf8"));
      const e = gen.eos_token_id;
      if (typeof e === "number") eos = [e];
      else if (Array.isArray(e)) eos = e;
    } catch {
      // generation_config.json is optional; config.json's eos_token_id stands.
    }
    const cap = this.opts.maxModelLen ?? Number.POSITIVE_INFINITY;
    return {
      architecture: m.spec.architecture,
      modelType: String(cfg.model_type ?? m.spec.modelType),
      vocabSize: m.vocab,
      maxModelLen: Math.min(m.spec.maxPositionEmbeddings, cap),
      eosTokenIds: eos,
      bosTokenId: m.spec.bosTokenId,
      dtype: m.dtype,
    };
  }

  /** The loaded model (the padded runner builds its own forward pass over it). */
  get loadedModel(): LoadedModel {
    return this.need();
  }

  private need(): LoadedModel {
    if (!this.model) throw new Error("CPU executor: load() was not called");
    return this.model;
  }

  profile(): CacheProfile {
    const s = this.need().spec;
    const bytesPerBlock = KvCache.bytesPerBlock(s.numLayers, this.blockSize, s.numKvHeads, s.headDim);
    const budget = this.opts.kvCacheBytes ?? DEFAULT_KV_BYTES;
    return { numBlocks: Math.floor(budget / bytesPerBlock), blockSize: this.blockSize, bytesPerBlock };
  }

  initCache(numBlocks: number): void {
    if (!Number.isInteger(numBlocks) || numBlocks <= 0)
      throw new Error(`initCache: bad block count ${numBlocks}`);
    const groupTokens = this.opts.maxGroupTokens ?? DEFAULT_GROUP_TOKENS;
    this.fwd = createForward(this.need(), numBlocks, this.blockSize, SCRATCH_BLOCKS, groupTokens);
    this.states.clear();
  }

  /** Releases helper threads; the runner is unusable afterwards. */
  close(): void {
    this.model?.weights.backend.close?.();
    this.model = null;
    this.fwd = null;
  }

  /** Read-only view for tests. */
  state(reqId: string): RequestState | undefined {
    return this.states.get(reqId);
  }

  execute(plan: SchedulerOutput): ModelRunnerOutput {
    const fwd = this.fwd;
    if (!fwd) throw new Error("CPU executor: initCache() was not called");
    this.applyPlan(plan);
    const out: ModelRunnerOutput = {
      stepId: plan.stepId,
      sampledTokenIds: {},
      logprobs: {},
      promptLogprobs: {},
    };
    const ids: string[] = [];
    const starts: number[] = [];
    const work: SeqWork[] = [];
    const computed = new Map<string, number>();
    for (const r of plan.scheduledNewReqs) computed.set(r.reqId, r.numComputedTokens);
    for (const r of plan.scheduledCachedReqs) computed.set(r.reqId, r.numComputedTokens);
    for (const [reqId, n] of Object.entries(plan.numScheduledTokens)) {
      const st = this.states.get(reqId);
      const done = computed.get(reqId);
      if (!st || done === undefined)
        throw new Error(`request ${reqId} is scheduled but unknown to the executor`);
      if (n <= 0) continue;
      if (done + n > st.tokenIds.length) {
        throw new Error(
          `request ${reqId}: ${done}+${n} tokens scheduled but only ${st.tokenIds.length} known`,
        );
      }
      const sample = done + n === st.tokenIds.length;
      const contrastive = st.sampling.strategy === "contrastive";
      // Every position's hidden state is kept by the steps that compute it (the scheduler gives contrastive
      // requests no prefix-cache hit), so they reach this step's first position.
      if (contrastive && done !== st.hidden.length) {
        throw new Error(
          `request ${reqId}: contrastive search needs the hidden state of every position, but the step starts at position ${done} and they reach ${st.hidden.length} (a prefix-cache hit?)`,
        );
      }
      ids.push(reqId);
      starts.push(done);
      work.push({
        tokens: st.tokenIds.slice(done, done + n),
        startPos: done,
        blockTable: st.blockTable,
        logits: st.sampling.promptLogprobs && done < st.promptLen ? "all" : sample ? "last" : "none",
        hidden: contrastive,
      });
      if (!sample) {
        out.sampledTokenIds[reqId] = [];
        out.logprobs[reqId] = [];
      }
    }
    const results = fwd.forward(work);
    const contrastiveReqs: Array<{ reqId: string; processed: Float64Array; raw: Float32Array }> = [];
    for (let i = 0; i < ids.length; i++) {
      const reqId = ids[i];
      const st = this.states.get(reqId)!;
      const w = work[i];
      const res = results[i];
      if (w.hidden) st.hidden.push(...res.hidden);
      if (w.logits === "all")
        out.promptLogprobs[reqId] = this.promptLogprobs(st, starts[i], w.tokens.length, res.logits);
      const end = starts[i] + w.tokens.length;
      if (end !== st.tokenIds.length) continue;
      const raw = res.logits[res.logits.length - 1];
      const processed = processLogits(raw, st.sampling, st.tokenIds, st.promptLen);
      if (st.sampling.strategy === "contrastive") {
        contrastiveReqs.push({ reqId, processed, raw });
        continue;
      }
      this.emit(out, reqId, st, raw, sampleToken(processed, st.sampling, st.tokenIds.length - st.promptLen));
    }
    if (contrastiveReqs.length > 0) {
      const picks = contrastiveStep(fwd, this.states, contrastiveReqs);
      for (const { reqId, raw } of contrastiveReqs)
        this.emit(out, reqId, this.states.get(reqId)!, raw, picks.get(reqId)!);
    }
    return out;
  }

  private emit(
    out: ModelRunnerOutput,
    reqId: string,
    st: RequestState,
    raw: Float32Array,
    token: number,
  ): void {
    const lsm = logSoftmax(raw);
    out.sampledTokenIds[reqId] = [token];
    out.logprobs[reqId] = [tokenLogprobs(lsm, token, st.sampling.numTopLogprobs)];
    st.tokenIds.push(token);
  }

  /** Entries for prompt tokens start+1 .. (null for token 0): logits at position i score token i+1. */
  private promptLogprobs(st: RequestState, start: number, n: number, logits: Float32Array[]) {
    const entries: Array<TokenLogprobs | null> = [];
    if (start === 0) entries.push(null);
    for (let j = 0; j < n; j++) {
      const pos = start + j;
      if (pos + 1 >= st.promptLen) break;
      entries.push(tokenLogprobs(logSoftmax(logits[j]), st.tokenIds[pos + 1], st.sampling.numTopLogprobs));
    }
    return entries;
  }

  private applyPlan(plan: SchedulerOutput): void {
    for (const id of plan.finishedReqIds) this.states.delete(id);
    for (const id of plan.preemptedReqIds) {
      const st = this.states.get(id);
      if (st) {
        st.blockTable = [];
        st.hidden = [];
      }
    }
    for (const r of plan.scheduledNewReqs) {
      this.states.set(r.reqId, {
        tokenIds: [...r.promptTokenIds],
        promptLen: r.promptTokenIds.length,
        blockTable: [...r.blockIds],
        sampling: r.sampling,
        hidden: [],
      });
    }
    for (const c of plan.scheduledCachedReqs) {
      const st = this.states.get(c.reqId);
      if (!st) throw new Error(`cached request ${c.reqId} is unknown to the executor`);
      if (c.resumedFromPreemption) {
        if (!c.allTokenIds) throw new Error(`resumed request ${c.reqId} came without allTokenIds`);
        st.tokenIds = [...c.allTokenIds];
        st.blockTable = [...c.newBlockIds];
        st.hidden = [];
      } else {
        st.blockTable.push(...c.newBlockIds);
      }
    }
  }
}
