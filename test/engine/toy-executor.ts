// A complete, deterministic Executor for engine tests: a toy "model" whose next token is a hash of
// the context it reads back from its own paged KV store (through the block tables the scheduler
// sent), so a wrong block table, a bad prefix-cache hit or a lost token after preemption changes the
// output. It also checks the SchedulerOutput protocol invariants and throws on any violation.
// Sampling draws depend only on (seed, n-th generated token), like the real executors.

import type {
  CacheProfile,
  Executor,
  ExecutorHealth,
  ModelInfo,
  ModelRunnerOutput,
  SamplingSettings,
  SchedulerOutput,
  TokenLogprobs,
} from "../../src/executor/types.ts";

interface ReqState {
  preempted: boolean;
  tokens: number[];
  blockIds: number[];
  numComputed: number;
  numPrompt: number;
  sampling: SamplingSettings;
}

export interface ToyExecutorOptions {
  numBlocks?: number;
  blockSize?: number;
  maxModelLen?: number;
  eosTokenId?: number;
  /** Return eos as the n-th generated token of a request when this says so. */
  eosWhen?: (reqId: string, numOutput: number) => boolean;
  /** Milliseconds each execute() takes (default 0: still asynchronous). */
  stepDelayMs?: number;
  /** How an output settles: after a timer (default), at once (an in-process executor's way), or after a
   * few microtasks with no event-loop turn (an async executor that never waits on I/O). */
  settle?: "timer" | "now" | "microtasks";
  /** Execute calls the engine may keep in flight (default 1); they still run in call order. */
  maxStepsInFlight?: number;
  /** Reported as CacheProfile.contrastivePositions (in 16-position chunks); absent: no limit. */
  contrastivePositions?: number;
}

/** Lowercase ASCII letters: byte tokens 97..122 in the byte-bpe fixture, so output is readable text. */
const FIRST = 97;
const SPAN = 26;

export class ToyExecutor implements Executor {
  readonly opts: Required<Omit<ToyExecutorOptions, "eosWhen" | "contrastivePositions">> &
    Pick<ToyExecutorOptions, "eosWhen" | "contrastivePositions">;
  private kv: Int32Array = new Int32Array(0);
  private readonly reqs = new Map<string, ReqState>();
  private readonly deathListeners: Array<(err: Error) => void> = [];
  private failNextWith: Error | null = null;
  readonly plans: SchedulerOutput[] = [];
  /** The plans in flight when each execute() call arrived (its own last), in call order. */
  readonly inFlightAtCall: SchedulerOutput[][] = [];
  private readonly inFlight: SchedulerOutput[] = [];
  isShutDown = false;

  constructor(opts: ToyExecutorOptions = {}) {
    this.opts = {
      numBlocks: 64,
      blockSize: 4,
      maxModelLen: 256,
      eosTokenId: 275, // "</s>" in the byte-bpe fixture
      stepDelayMs: 0,
      settle: "timer",
      maxStepsInFlight: 1,
      ...opts,
    };
  }

  async load(): Promise<ModelInfo> {
    return {
      architecture: "ToyForCausalLM",
      modelType: "toy",
      vocabSize: 279,
      maxModelLen: this.opts.maxModelLen,
      eosTokenIds: [this.opts.eosTokenId],
      bosTokenId: 274,
      dtype: "float32",
    };
  }

  async profile(): Promise<CacheProfile> {
    return {
      numBlocks: this.opts.numBlocks,
      blockSize: this.opts.blockSize,
      bytesPerBlock: 4 * this.opts.blockSize,
      ...(this.opts.contrastivePositions === undefined
        ? {}
        : { contrastivePositions: this.opts.contrastivePositions, contrastiveChunk: 16 }),
    };
  }

  async initCache(numBlocks: number): Promise<void> {
    this.kv = new Int32Array(numBlocks * this.opts.blockSize).fill(-1);
  }

  async health(): Promise<ExecutorHealth> {
    return { ok: !this.isShutDown };
  }

  async shutdown(): Promise<void> {
    this.isShutDown = true;
  }

  onDeath(listener: (err: Error) => void): void {
    this.deathListeners.push(listener);
  }

  /** Simulates the worker dying on its own. */
  die(err: Error): void {
    for (const l of this.deathListeners) l(err);
  }

  failNextExecute(err: Error): void {
    this.failNextWith = err;
  }

  /** Requests the executor still holds state for. */
  liveRequestIds(): string[] {
    return [...this.reqs.keys()];
  }

  get maxStepsInFlight(): number {
    return this.opts.maxStepsInFlight;
  }

  execute(plan: SchedulerOutput): Promise<ModelRunnerOutput> {
    this.inFlight.push(plan);
    this.inFlightAtCall.push([...this.inFlight]);
    // The promise run() made, not a wrapper: an output that settles at once must look settled to the engine.
    const out = this.run(plan);
    const done = () => void this.inFlight.splice(this.inFlight.indexOf(plan), 1);
    out.then(done, done);
    return out;
  }

  private async run(plan: SchedulerOutput): Promise<ModelRunnerOutput> {
    if (this.opts.settle === "timer") await new Promise((r) => setTimeout(r, this.opts.stepDelayMs));
    else if (this.opts.settle === "microtasks") for (let i = 0; i < 3; i++) await null;
    if (this.failNextWith !== null) {
      const err = this.failNextWith;
      this.failNextWith = null;
      throw err;
    }
    this.plans.push(plan);
    for (const id of plan.finishedReqIds) {
      if (!this.reqs.delete(id)) throw new Error(`plan ${plan.stepId}: unknown finished request ${id}`);
    }
    // Like the CPU executor: a preempted request keeps its sampling settings but loses its blocks.
    for (const id of plan.preemptedReqIds) {
      const st = this.reqs.get(id);
      if (st === undefined) throw new Error(`plan ${plan.stepId}: unknown preempted request ${id}`);
      st.preempted = true;
      st.blockIds = [];
    }
    for (const r of plan.scheduledNewReqs) {
      if (this.reqs.has(r.reqId)) throw new Error(`plan ${plan.stepId}: ${r.reqId} sent as new twice`);
      this.reqs.set(r.reqId, {
        preempted: false,
        tokens: [...r.promptTokenIds],
        blockIds: [...r.blockIds],
        numComputed: r.numComputedTokens,
        numPrompt: r.promptTokenIds.length,
        sampling: r.sampling,
      });
    }
    for (const r of plan.scheduledCachedReqs) {
      const st = this.reqs.get(r.reqId);
      if (st === undefined) throw new Error(`plan ${plan.stepId}: cached request ${r.reqId} is unknown`);
      if (r.resumedFromPreemption) {
        if (!st.preempted) throw new Error(`plan ${plan.stepId}: ${r.reqId} resumed but never preempted`);
        if (r.allTokenIds === undefined)
          throw new Error(`plan ${plan.stepId}: resumed ${r.reqId} without tokens`);
        st.preempted = false;
        st.tokens = [...r.allTokenIds];
        st.blockIds = [...r.newBlockIds];
        st.numComputed = r.numComputedTokens;
        continue;
      }
      if (st.preempted) throw new Error(`plan ${plan.stepId}: preempted ${r.reqId} scheduled without resume`);
      if (st.numComputed !== r.numComputedTokens) {
        throw new Error(
          `plan ${plan.stepId}: ${r.reqId} computed ${st.numComputed}, plan says ${r.numComputedTokens}`,
        );
      }
      st.blockIds.push(...r.newBlockIds);
    }
    return this.compute(plan);
  }

  private compute(plan: SchedulerOutput): ModelRunnerOutput {
    const out: ModelRunnerOutput = {
      stepId: plan.stepId,
      sampledTokenIds: {},
      logprobs: {},
      promptLogprobs: {},
    };
    let total = 0;
    for (const [reqId, n] of Object.entries(plan.numScheduledTokens)) {
      const st = this.reqs.get(reqId)!;
      total += n;
      const bs = this.opts.blockSize;
      if (st.blockIds.length * bs < st.numComputed + n) throw new Error(`${reqId}: block table too short`);
      const promptLps: Array<TokenLogprobs | null> = [];
      for (let pos = st.numComputed; pos < st.numComputed + n; pos++) {
        const t = st.tokens[pos];
        if (t === undefined) throw new Error(`${reqId}: asked to compute position ${pos} with no token`);
        this.kv[st.blockIds[Math.floor(pos / bs)] * bs + (pos % bs)] = t;
        // Logits at position pos score prompt token pos+1 (the CPU executor's convention); token 0 has none.
        if (pos === 0) promptLps.push(null);
        if (pos + 1 < st.numPrompt) promptLps.push({ logprob: -1 - (st.tokens[pos + 1] % 3), top: [] });
      }
      if (st.sampling.promptLogprobs) out.promptLogprobs[reqId] = promptLps;
      st.numComputed += n;
      if (st.numComputed < st.tokens.length) continue; // still prefilling
      const next = this.nextToken(reqId, st);
      st.tokens.push(next);
      out.sampledTokenIds[reqId] = [next];
      const top: Array<[number, number]> = [];
      for (let k = 0; k < st.sampling.numTopLogprobs; k++)
        top.push([FIRST + ((next - FIRST + k) % SPAN), -0.1 * (k + 1)]);
      out.logprobs[reqId] = [{ logprob: -0.1, top }];
    }
    if (total !== plan.totalNumScheduledTokens) throw new Error(`plan ${plan.stepId}: token total mismatch`);
    return out;
  }

  /** A hash of the context as read back from the KV store, plus a (seed, n) draw when sampling. */
  private nextToken(reqId: string, st: ReqState): number {
    const numOutput = st.tokens.length - st.numPrompt;
    if (this.opts.eosWhen?.(reqId, numOutput) && !st.sampling.ignoreEos) return this.opts.eosTokenId;
    const bs = this.opts.blockSize;
    let h = 2166136261;
    for (let pos = 0; pos < st.numComputed; pos++) {
      const t = this.kv[st.blockIds[Math.floor(pos / bs)] * bs + (pos % bs)];
      h = Math.imul(h ^ t, 16777619) >>> 0;
    }
    if (st.sampling.strategy === "sample") {
      const draw =
        Math.imul((st.sampling.seed ^ Math.imul(numOutput + 1, 0x9e3779b1)) >>> 0, 0x85ebca6b) >>> 0;
      h = (h ^ draw) >>> 0;
    }
    return FIRST + (h % SPAN);
  }
}
