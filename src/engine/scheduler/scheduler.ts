// The continuous-batching scheduler (vLLM v1 style): one token budget per step, no prefill/decode
// modes. Running requests are served first (in order), then waiting ones FCFS while the batch has
// room (maxNumSeqs) and budget; prompts are chunked to fit the budget. With mixPrefillAndDecode off
// (option.enable_chunked_prefill=false: lmi-dist's and vLLM v0's order) a step that has prompt work
// (a waiting request to admit, or a running prompt not fully computed) carries prompt tokens only,
// and decode rows wait for the next step without prompt work. When KV blocks run out, the
// newest running request is preempted by recomputation (blocks freed, back to the queue front).
// Steps may be pipelined: schedule() can run again before the previous plan's output is applied. A
// request whose step will sample counts that token as pending (the executor feeds it to the next step
// itself), so its decode is scheduled at once; its pending count drops when the output arrives. A
// request is not scheduled past what its pending samples could still need (max tokens, model length);
// a stop token found late costs one discarded step. Outputs of steps sent before a request was
// preempted are ignored. Pure and synchronous. Invariant: every request is in exactly one of
// waiting / running / finished.

import type { ModelRunnerOutput, SchedulerOutput, TokenLogprobs } from "../../executor/types.ts";
import type { KVCacheBlock } from "../kvcache/kv-cache-block.ts";
import { type ComputedBlocks, KVCacheManager } from "../kvcache/kv-cache-manager.ts";
import type { FinishReason } from "../protocol.ts";
import type { Request } from "../request.ts";
import { checkStop } from "./check-stop.ts";
import { RequestBook } from "./request-book.ts";

const NO_HIT: ComputedBlocks = { blocks: [], numComputedTokens: 0 };

/**
 * Positions of the executor's contrastive hidden-state pool a contrastive request of at most `longest` tokens
 * holds while it runs: whole chunks (CacheProfile.contrastiveChunk; 1 when absent).
 */
export function contrastiveReservation(longest: number, chunk = 1): number {
  return Math.ceil(longest / chunk) * chunk;
}

export interface SchedulerOptions {
  /** option.max_rolling_batch_size: most running requests. */
  maxNumSeqs: number;
  /** option.max_rolling_batch_prefill_tokens: most tokens computed in one step. */
  maxNumBatchedTokens: number;
  blockSize: number;
  numBlocks: number;
  enablePrefixCaching: boolean;
  /** Longest sequence (prompt + output); a request reaching it finishes with "length". */
  maxModelLen: number;
  /** option.waiting_steps: with requests running, a new one waits this many steps before admission. */
  waitingSteps?: number;
  /**
   * option.enable_chunked_prefill (default true): decode rows ride in the same step as prompt chunks.
   * False: steps with prompt work carry nothing else (prefill first); prompts longer than the budget are
   * still split over consecutive such steps.
   */
  mixPrefillAndDecode?: boolean;
  /**
   * CacheProfile.contrastivePositions / contrastiveChunk: contrastive requests are admitted only while their
   * prompt + max tokens (each rounded up to whole chunks) fit in these positions together. Absent: no limit.
   */
  contrastivePositions?: number;
  contrastiveChunk?: number;
}

/** What one step did to one request (vLLM EngineCoreOutput). */
export interface EngineCoreOutput {
  reqId: string;
  newTokenIds: number[];
  newLogprobs: TokenLogprobs[];
  /** Prompt logprobs computed this step (a chunk of them with chunked prefill). */
  newPromptLogprobs: Array<TokenLogprobs | null> | null;
  /** First position computed this step; its entries score tokens from here + 1 (see ModelRunnerOutput). */
  promptLogprobsStart: number;
  finishReason: FinishReason | null;
  numCachedTokens: number;
}

export interface SchedulerStats {
  numRunning: number;
  numWaiting: number;
  kvCacheUsage: number;
  numPreemptions: number;
  prefixCacheQueries: number;
  prefixCacheHits: number;
}

export class Scheduler extends RequestBook {
  readonly opts: Readonly<SchedulerOptions>;
  readonly kv: KVCacheManager;
  private preemptedSinceLastStep: string[] = [];
  private numPreemptions = 0;
  private prefixQueries = 0;
  private prefixHits = 0;
  /** Running contrastive requests, which hold positions of the executor's hidden-state pool, and their sum. */
  private readonly contrastiveHolders = new Set<string>();
  private contrastiveInUse = 0;

  constructor(opts: SchedulerOptions) {
    super(opts.maxModelLen);
    for (const k of ["maxNumSeqs", "maxNumBatchedTokens", "blockSize", "numBlocks", "maxModelLen"] as const) {
      if (!Number.isInteger(opts[k]) || opts[k] < 1)
        throw new Error(`${k} must be a positive integer, got ${opts[k]}`);
    }
    this.opts = { ...opts };
    this.kv = new KVCacheManager(opts);
  }

  /** Finishes requests from outside (abort, stop string, error); their blocks are freed now. */
  finishRequests(reqIds: Iterable<string>, reason: FinishReason): void {
    for (const id of reqIds) {
      const req = this.requests.get(id);
      if (req === undefined) continue;
      if (req.status === "running") this.running = this.running.filter((r) => r !== req);
      else this.waiting.remove(req);
      this.finish(req, reason);
    }
  }

  schedule(): SchedulerOutput {
    const plan: SchedulerOutput = {
      stepId: this.stepId++,
      scheduledNewReqs: [],
      scheduledCachedReqs: [],
      numScheduledTokens: {},
      totalNumScheduledTokens: 0,
      finishedReqIds: [],
      preemptedReqIds: [],
    };
    let budget = this.opts.maxNumBatchedTokens;
    const scheduled: Array<[Request, number]> = [];
    if (this.opts.mixPrefillAndDecode === false) this.schedulePromptsOnly(plan, scheduled, budget);
    if (scheduled.length === 0) {
      const preempted = this.scheduleRunning(plan, scheduled, budget);
      for (const [, n] of scheduled) budget -= n;
      // After a preemption there is no room to admit anyone this step (vLLM does the same).
      if (!preempted) this.scheduleWaiting(plan, scheduled, budget);
    }

    for (const [req, n] of scheduled) {
      plan.numScheduledTokens[req.reqId] = n;
      plan.totalNumScheduledTokens += n;
      req.numComputedTokens += n;
      req.isKnownToExecutor = true;
      // The step reaches the end of what the executor will know: it samples the next token.
      if (req.numComputedTokens === req.numTokensWithPending) req.numPendingSamples++;
    }
    plan.finishedReqIds = this.finishedSinceLastStep;
    plan.preemptedReqIds = this.preemptedSinceLastStep;
    this.finishedSinceLastStep = [];
    this.preemptedSinceLastStep = [];
    return plan;
  }

  /** Returns true when a request was preempted. */
  private scheduleRunning(
    plan: SchedulerOutput,
    scheduled: Array<[Request, number]>,
    budget: number,
  ): boolean {
    let preempted = false;
    for (let i = 0; i < this.running.length && budget > 0; i++) {
      const req = this.running[i];
      const n = Math.min(req.numTokensWithPending - req.numComputedTokens, budget);
      if (n <= 0 || !this.mayGrow(req)) continue;
      let added = this.kv.allocateSlots(req, n);
      while (added === null) {
        const victim = this.running.pop()!; // lowest priority under FCFS: the newest
        this.preempt(victim);
        preempted = true;
        if (victim === req) break;
        added = this.kv.allocateSlots(req, n);
      }
      if (added === null) break;
      this.scheduleCached(plan, scheduled, req, n, added);
      budget -= n;
    }
    return preempted;
  }

  /** A running request's n tokens go into the plan, with the blocks just allocated for them. */
  private scheduleCached(
    plan: SchedulerOutput,
    scheduled: Array<[Request, number]>,
    req: Request,
    n: number,
    added: readonly KVCacheBlock[],
  ): void {
    plan.scheduledCachedReqs.push({
      reqId: req.reqId,
      newBlockIds: added.map((b) => b.blockId),
      numComputedTokens: req.numComputedTokens,
      resumedFromPreemption: false,
    });
    scheduled.push([req, n]);
  }

  /**
   * Prefill first: the rest of running prompts (oldest first), then waiting requests, and no decode rows.
   * Schedules nothing when there is no prompt work or no KV room for it (the step then decodes; a
   * request that cannot get blocks here never preempts another: decoding frees or preempts as usual).
   * A running prompt without room stops the step there: waiting requests are not admitted past it.
   */
  private schedulePromptsOnly(
    plan: SchedulerOutput,
    scheduled: Array<[Request, number]>,
    budget: number,
  ): void {
    for (const req of this.running) {
      if (budget <= 0) return;
      // More than one token to compute: a prompt (or a preempted request's recomputation) in progress.
      // One left is a decode row (its pending sample), or a prompt's last token, which decoding serves.
      const left = req.numTokensWithPending - req.numComputedTokens;
      if (left <= 1) continue;
      const n = Math.min(left, budget);
      const added = this.kv.allocateSlots(req, n);
      if (added === null) return; // FCFS: no admission past a running prompt that has no room
      this.scheduleCached(plan, scheduled, req, n, added);
      budget -= n;
    }
    this.scheduleWaiting(plan, scheduled, budget);
  }

  private scheduleWaiting(plan: SchedulerOutput, scheduled: Array<[Request, number]>, budget: number): void {
    const waitingSteps = this.opts.waitingSteps ?? 0;
    while (budget > 0 && this.running.length < this.opts.maxNumSeqs) {
      const req = this.waiting.peek();
      if (req === null) break;
      if (this.running.length > 0 && this.stepId - 1 - req.arrivalStep < waitingSteps) break;
      // Prompt logprobs need every prompt position computed, and contrastive search every position's hidden
      // state (the executor keeps them from the steps that compute them), so such requests skip the prefix cache.
      const everyPosition = req.sampling.promptLogprobs || req.sampling.strategy === "contrastive";
      const hit = everyPosition ? NO_HIT : this.kv.getComputedBlocks(req);
      const numComputed = req.numComputedTokens + hit.numComputedTokens;
      const n = Math.min(req.numTokens - numComputed, budget);
      const hidden = this.contrastivePositionsFor(req);
      if (hidden > 0 && this.contrastiveInUse + hidden > this.opts.contrastivePositions!) break; // FCFS, as below
      const added = this.kv.allocateSlots(req, n, hit.blocks);
      if (added === null) break; // FCFS: nobody jumps the head of the queue
      if (hidden > 0) {
        this.contrastiveHolders.add(req.reqId);
        this.contrastiveInUse += hidden;
      }
      this.waiting.popFront();
      req.numComputedTokens = numComputed;
      if (req.numCachedTokens < 0) {
        req.numCachedTokens = hit.numComputedTokens;
        this.prefixQueries += req.numTokens;
        this.prefixHits += hit.numComputedTokens;
      }
      const resumed = req.status === "preempted";
      req.status = "running";
      this.running.push(req);
      if (resumed) {
        plan.scheduledCachedReqs.push({
          reqId: req.reqId,
          newBlockIds: this.kv.getBlockIds(req.reqId),
          numComputedTokens: numComputed,
          resumedFromPreemption: true,
          allTokenIds: [...req.allTokenIds],
        });
      } else {
        plan.scheduledNewReqs.push({
          reqId: req.reqId,
          promptTokenIds: [...req.promptTokenIds],
          sampling: req.sampling,
          blockIds: this.kv.getBlockIds(req.reqId),
          numComputedTokens: numComputed,
        });
      }
      scheduled.push([req, n]);
      budget -= n;
    }
  }

  /**
   * False when the samples already on their way could end the request by length: another step would
   * compute a token past its max tokens or the model length.
   */
  private mayGrow(req: Request): boolean {
    if (req.numPendingSamples === 0) return true;
    return (
      req.numOutputTokens + req.numPendingSamples < req.maxTokens &&
      req.numTokensWithPending < this.opts.maxModelLen
    );
  }

  /**
   * Applies what the executor did for a plan: appends sampled tokens, checks token-level stops, frees
   * finished requests. Returns one output per request that produced something or finished.
   */
  updateFromOutput(plan: SchedulerOutput, out: ModelRunnerOutput): EngineCoreOutput[] {
    const outputs: EngineCoreOutput[] = [];
    const starts = new Map<string, number>();
    for (const r of plan.scheduledNewReqs) starts.set(r.reqId, r.numComputedTokens);
    for (const r of plan.scheduledCachedReqs) starts.set(r.reqId, r.numComputedTokens);
    for (const [reqId, start] of starts) {
      const req = this.requests.get(reqId);
      if (req === undefined || req.status !== "running") continue; // finished meanwhile
      // Arrived or preempted after this plan went out: the output belongs to an earlier life of the id.
      if (plan.stepId < req.ignoreOutputsBefore) continue;
      const sampled = out.sampledTokenIds[reqId] ?? [];
      if (sampled.length > 0) req.numPendingSamples--;
      const newTokenIds: number[] = [];
      let finishReason: FinishReason | null = null;
      for (const t of sampled) {
        req.appendOutputToken(t);
        newTokenIds.push(t);
        finishReason = checkStop(req, t, this.opts.maxModelLen);
        if (finishReason !== null) break;
      }
      const newPromptLogprobs = out.promptLogprobs[reqId] ?? null;
      if (finishReason !== null) {
        this.running = this.running.filter((r) => r !== req);
        this.finish(req, finishReason);
      }
      if (newTokenIds.length === 0 && finishReason === null && newPromptLogprobs === null) continue;
      outputs.push({
        reqId,
        newTokenIds,
        newLogprobs: (out.logprobs[reqId] ?? []).slice(0, newTokenIds.length),
        newPromptLogprobs,
        promptLogprobsStart: start,
        finishReason,
        numCachedTokens: Math.max(0, req.numCachedTokens),
      });
    }
    return outputs;
  }

  stats(): SchedulerStats {
    return {
      numRunning: this.running.length,
      numWaiting: this.waiting.length,
      kvCacheUsage: this.kv.usage,
      numPreemptions: this.numPreemptions,
      prefixCacheQueries: this.prefixQueries,
      prefixCacheHits: this.prefixHits,
    };
  }

  /** Waiting and running requests, oldest first within each (tests and error fan-out). */
  unfinishedRequestIds(): string[] {
    return [...this.running, ...this.waiting.toArray()].map((r) => r.reqId);
  }

  /**
   * Positions of the executor's contrastive hidden-state pool that req needs when admitted: its longest
   * possible sequence in whole chunks; 0 for other strategies or without a pool limit.
   */
  private contrastivePositionsFor(req: Request): number {
    if (this.opts.contrastivePositions === undefined || req.sampling.strategy !== "contrastive") return 0;
    const longest = Math.min(req.promptTokenIds.length + req.maxTokens, this.opts.maxModelLen);
    return contrastiveReservation(longest, this.opts.contrastiveChunk);
  }

  private releaseContrastive(req: Request): void {
    if (this.contrastiveHolders.delete(req.reqId)) this.contrastiveInUse -= this.contrastivePositionsFor(req);
  }

  /** Contrastive pool positions held by running requests (tests, stats). */
  get contrastivePositionsInUse(): number {
    return this.contrastiveInUse;
  }

  private preempt(req: Request): void {
    this.kv.free(req);
    this.releaseContrastive(req);
    req.numComputedTokens = 0;
    // Samples of steps already sent are dropped: the request recomputes from the tokens it has.
    req.numPendingSamples = 0;
    req.ignoreOutputsBefore = this.stepId;
    req.status = "preempted";
    req.numPreemptions++;
    this.numPreemptions++;
    // The executor keeps a preempted request's settings (only its blocks go), so it stays "known" and
    // gets a finishedReqIds entry even if it is aborted while waiting to resume.
    if (req.isKnownToExecutor) this.preemptedSinceLastStep.push(req.reqId);
    this.waiting.pushFront(req);
  }

  private finish(req: Request, reason: FinishReason): void {
    this.kv.free(req);
    this.releaseContrastive(req);
    req.status = "finished";
    req.finishReason = reason;
    if (req.isKnownToExecutor) this.finishedSinceLastStep.push(req.reqId);
    req.isKnownToExecutor = false;
    this.requests.delete(req.reqId);
  }
}
