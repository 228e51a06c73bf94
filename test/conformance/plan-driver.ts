// Drives any Executor through hand-built SchedulerOutput sequences, like a minimal scheduler: block
// allocation, chunked prefill under a token budget, decode, prefix-cache hits that reuse another
// request's full blocks, preemption and resume, stop at max tokens or at eos (unless ignoreEos). It
// records what the executor returned per request.

import { neutralSamplingSettings } from "../../src/executor/testing/sampling-settings.ts";
import type {
  CachedRequestData,
  Executor,
  NewRequestData,
  SamplingSettings,
  SchedulerOutput,
  TokenLogprobs,
} from "../../src/executor/types.ts";

export interface DriverRequest {
  reqId: string;
  tokenIds: number[];
  promptLen: number;
  sampling: SamplingSettings;
  maxNewTokens: number;
  blockIds: number[];
  numComputed: number;
  isNew: boolean;
  resumed: boolean;
  newBlocks: number[];
  generated: number[];
  logprobs: TokenLogprobs[];
  promptLogprobs: Array<TokenLogprobs | null>;
  done: boolean;
  preempted: boolean;
}

export function samplingSettings(o: Partial<SamplingSettings> = {}): SamplingSettings {
  return neutralSamplingSettings({ ignoreEos: true, ...o });
}

export class PlanDriver {
  private stepId = 0;
  private readonly free: number[];
  private readonly refs = new Map<number, number>();
  readonly reqs = new Map<string, DriverRequest>();
  private finished: string[] = [];
  private preemptedIds: string[] = [];

  constructor(
    readonly exec: Executor,
    readonly blockSize: number,
    numBlocks: number,
    /** Tokens per step across requests (chunked prefill when a prompt exceeds what is left). */
    readonly tokenBudget = 1 << 30,
  ) {
    // Hand blocks out in a scrambled order so block tables are never the identity mapping.
    this.free = Array.from({ length: numBlocks }, (_, i) => (i * 7919) % numBlocks);
  }

  add(
    reqId: string,
    prompt: number[],
    sampling: SamplingSettings,
    maxNewTokens: number,
    prefix?: { fromReqId: string; numTokens: number },
  ): void {
    const r: DriverRequest = {
      reqId,
      tokenIds: [...prompt],
      promptLen: prompt.length,
      sampling,
      maxNewTokens,
      blockIds: [],
      numComputed: 0,
      isNew: true,
      resumed: false,
      newBlocks: [],
      generated: [],
      logprobs: [],
      promptLogprobs: [],
      done: false,
      preempted: false,
    };
    if (prefix) {
      const src = this.reqs.get(prefix.fromReqId);
      if (!src || prefix.numTokens % this.blockSize !== 0 || prefix.numTokens > src.numComputed) {
        throw new Error("prefix hit must cover full blocks the source request already computed");
      }
      for (let i = 0; i < prefix.numTokens; i++) {
        if (src.tokenIds[i] !== prompt[i]) throw new Error("prefix hit needs an identical prefix");
      }
      r.blockIds = src.blockIds.slice(0, prefix.numTokens / this.blockSize);
      for (const b of r.blockIds) this.refs.set(b, (this.refs.get(b) ?? 0) + 1);
      r.numComputed = prefix.numTokens;
    }
    this.reqs.set(reqId, r);
  }

  private alloc(r: DriverRequest, upTo: number): void {
    while (r.blockIds.length * this.blockSize < upTo) {
      const b = this.free.shift();
      if (b === undefined) throw new Error("driver out of KV blocks");
      this.refs.set(b, 1);
      r.blockIds.push(b);
      r.newBlocks.push(b);
    }
  }

  private release(r: DriverRequest): void {
    for (const b of r.blockIds) {
      const n = (this.refs.get(b) ?? 1) - 1;
      this.refs.set(b, n);
      if (n === 0) this.free.push(b);
    }
    r.blockIds = [];
  }

  preempt(reqId: string): void {
    const r = this.reqs.get(reqId)!;
    this.release(r);
    r.numComputed = 0;
    r.preempted = true;
    r.resumed = true;
    r.newBlocks = [];
    this.preemptedIds.push(reqId);
  }

  abort(reqId: string): void {
    const r = this.reqs.get(reqId)!;
    r.done = true;
    this.release(r);
    this.finished.push(reqId);
  }

  get active(): DriverRequest[] {
    return [...this.reqs.values()].filter((r) => !r.done);
  }

  /** One step over every active request, in insertion order, under the token budget. */
  async step(): Promise<void> {
    const plan: SchedulerOutput = {
      stepId: this.stepId++,
      scheduledNewReqs: [],
      scheduledCachedReqs: [],
      numScheduledTokens: {},
      totalNumScheduledTokens: 0,
      finishedReqIds: this.finished,
      preemptedReqIds: this.preemptedIds,
    };
    this.finished = [];
    this.preemptedIds = [];
    let budget = this.tokenBudget;
    for (const r of this.active) {
      const n = Math.min(r.tokenIds.length - r.numComputed, budget);
      if (n <= 0) continue;
      budget -= n;
      this.alloc(r, r.numComputed + n);
      if (r.isNew) {
        const nr: NewRequestData = {
          reqId: r.reqId,
          promptTokenIds: [...r.tokenIds],
          sampling: r.sampling,
          blockIds: [...r.blockIds],
          numComputedTokens: r.numComputed,
        };
        plan.scheduledNewReqs.push(nr);
      } else {
        const c: CachedRequestData = {
          reqId: r.reqId,
          newBlockIds: r.resumed ? [...r.blockIds] : r.newBlocks,
          numComputedTokens: r.numComputed,
          resumedFromPreemption: r.resumed,
        };
        if (r.resumed) c.allTokenIds = [...r.tokenIds];
        plan.scheduledCachedReqs.push(c);
      }
      r.isNew = false;
      r.resumed = false;
      r.preempted = false;
      r.newBlocks = [];
      plan.numScheduledTokens[r.reqId] = n;
      plan.totalNumScheduledTokens += n;
      r.numComputed += n;
    }
    const out = await this.exec.execute(plan);
    for (const reqId of Object.keys(plan.numScheduledTokens)) {
      const r = this.reqs.get(reqId)!;
      const toks = out.sampledTokenIds[reqId] ?? [];
      const complete = r.numComputed === r.tokenIds.length;
      if (complete !== (toks.length === 1)) {
        throw new Error(`step ${plan.stepId}: ${reqId} sampled ${toks.length} tokens, complete=${complete}`);
      }
      r.promptLogprobs.push(...(out.promptLogprobs[reqId] ?? []));
      for (const t of toks) {
        r.tokenIds.push(t);
        r.generated.push(t);
      }
      r.logprobs.push(...(out.logprobs[reqId] ?? []));
      const last = r.generated[r.generated.length - 1];
      const hitEos = toks.length > 0 && !r.sampling.ignoreEos && r.sampling.eosTokenIds.includes(last);
      if (r.generated.length >= r.maxNewTokens || hitEos) {
        r.done = true;
        this.release(r);
        this.finished.push(reqId);
      }
    }
  }

  async runToCompletion(maxSteps = 10_000): Promise<void> {
    for (let i = 0; i < maxSteps && this.active.length > 0; i++) await this.step();
    if (this.active.length > 0) throw new Error("driver: requests still active after maxSteps");
  }
}
