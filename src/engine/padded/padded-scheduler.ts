// The padded rolling-batch scheduler (option.rolling_batch=scheduler, spec §4.3): requests run in
// left-padded sub-batches with one contiguous KV region each. A step trims finished rows, re-splits a
// changed batch by max_sparsity / max_splits (which merges last step's prefilled rows into the running
// ones), decodes every sub-batch once and prefills admitted requests as their own sub-batches.
// Pure and synchronous. Invariants: a region reserves rows x capacity slots, capacity covering every
// row's last token, so nothing is ever preempted; reserved slots, repack transients included, never
// exceed numSlots; greedy/sample rows and contrastive rows never share a sub-batch (one batcher each).

import type { PaddedSubBatch } from "../../executor/padded-types.ts";
import type { ModelRunnerOutput, SchedulerOutput } from "../../executor/types.ts";
import type { FinishReason } from "../protocol.ts";
import type { Request } from "../request.ts";
import { checkStop } from "../scheduler/check-stop.ts";
import { RequestBook } from "../scheduler/request-book.ts";
import type { EngineCoreOutput, SchedulerStats } from "../scheduler/scheduler.ts";
import { choosePartition, type PartitionOptions } from "./partition.ts";

export interface PaddedSchedulerOptions extends PartitionOptions {
  /** option.max_rolling_batch_size: most running requests. */
  maxNumSeqs: number;
  /** Most prompt tokens, padding included, prefilled in one step; the first admission ignores it. */
  maxNumBatchedTokens: number;
  /** Token slots of the executor's KV arena (numBlocks x blockSize of its profile). */
  numSlots: number;
  /** Longest sequence (prompt + output); a request reaching it finishes with "length". */
  maxModelLen: number;
  /** option.waiting_steps: with requests running, a new one waits this many steps before admission. */
  waitingSteps?: number;
}

/** Search families: HF's seq-scheduler keeps one batcher for greedy and sampling, one for contrastive. */
type Family = "greedy" | "contrastive";

interface Batch {
  id: number;
  family: Family;
  /** Rows as laid out in the executor's region, finished ones included until the region is rebuilt. */
  rows: Request[];
  capacity: number;
}

const familyOf = (r: Request): Family => (r.sampling.strategy === "contrastive" ? "contrastive" : "greedy");
const isLive = (r: Request) => r.status === "running";
const slotsOf = (b: Batch) => b.rows.length * b.capacity;
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

export class PaddedScheduler extends RequestBook {
  readonly opts: Readonly<PaddedSchedulerOptions>;
  /** The executor's regions as of the last plan (prefill sub-batches included). */
  private batches: Batch[] = [];
  /** Families whose rows changed (a row finished, or new rows were prefilled): re-split them. */
  private readonly dirty = new Set<Family>();
  private nextBatchId = 1;
  private peak = 0;

  constructor(opts: PaddedSchedulerOptions) {
    super(opts.maxModelLen);
    for (const k of ["maxNumSeqs", "maxNumBatchedTokens", "numSlots", "maxModelLen"] as const) {
      if (!Number.isInteger(opts[k]) || opts[k] < 1)
        throw new Error(`${k} must be a positive integer, got ${opts[k]}`);
    }
    choosePartition([], opts); // validates maxSparsity / maxSplits
    this.opts = { ...opts };
  }

  get slotUsage(): { reserved: number; peak: number } {
    return { reserved: sum(this.batches.map(slotsOf)), peak: this.peak };
  }

  /** The current sub-batches (tests): ids and live row ids. */
  layout(): Array<{ batchId: number; reqIds: string[] }> {
    return this.batches.map((b) => ({ batchId: b.id, reqIds: b.rows.filter(isLive).map((r) => r.reqId) }));
  }

  finishRequests(reqIds: Iterable<string>, reason: FinishReason): void {
    for (const id of reqIds) {
      const req = this.requests.get(id);
      if (req === undefined) continue;
      if (req.status === "waiting") this.waiting.remove(req);
      this.finish(req, reason);
    }
  }

  schedule(): SchedulerOutput {
    const decode = this.planDecode();
    const decodeSlots = sum(decode.map(slotsOf));
    const prefill = this.admit(decodeSlots);
    this.peak = Math.max(this.peak, decodeSlots + sum(prefill.map(slotsOf)));
    const plan: SchedulerOutput = {
      stepId: this.stepId++,
      scheduledNewReqs: [],
      scheduledCachedReqs: [],
      numScheduledTokens: {},
      totalNumScheduledTokens: 0,
      finishedReqIds: this.finishedSinceLastStep,
      preemptedReqIds: [],
      padded: { decode: decode.map(wire), prefill: prefill.map(wire) },
    };
    this.finishedSinceLastStep = [];
    for (const b of decode) {
      for (const req of b.rows.filter(isLive)) {
        plan.scheduledCachedReqs.push({
          reqId: req.reqId,
          newBlockIds: [],
          numComputedTokens: req.numComputedTokens,
          resumedFromPreemption: false,
        });
        this.schedule1(plan, req, 1);
      }
    }
    for (const b of prefill) {
      for (const req of b.rows) {
        plan.scheduledNewReqs.push({
          reqId: req.reqId,
          promptTokenIds: [...req.promptTokenIds],
          sampling: req.sampling,
          blockIds: [],
          numComputedTokens: 0,
        });
        this.schedule1(plan, req, req.numPromptTokens);
        req.isKnownToExecutor = true;
      }
      this.dirty.add(b.family); // merge the new rows into the running ones next step
    }
    this.batches = [...decode, ...prefill];
    return plan;
  }

  private schedule1(plan: SchedulerOutput, req: Request, n: number): void {
    plan.numScheduledTokens[req.reqId] = n;
    plan.totalNumScheduledTokens += n;
    req.numComputedTokens += n;
  }

  /**
   * The sub-batches to decode: unchanged families keep their regions; a changed one is re-split over
   * its live rows (reusing a region whose rows are exactly a part) if the repack fits in memory next to
   * the old regions, else it keeps its regions, finished rows skipped, until it does.
   */
  private planDecode(): Batch[] {
    const withLive = this.batches.filter((b) => b.rows.some(isLive));
    const out: Batch[] = [];
    let oldSlots = sum(this.batches.map(slotsOf));
    for (const family of ["greedy", "contrastive"] as const) {
      const mine = withLive.filter((b) => b.family === family);
      if (!this.dirty.has(family)) {
        out.push(...mine);
        continue;
      }
      const next = this.resplit(family, mine);
      const built = sum(next.filter((b) => !mine.includes(b)).map(slotsOf));
      if (oldSlots + built <= this.opts.numSlots) {
        this.peak = Math.max(this.peak, oldSlots + built);
        oldSlots += built; // the old regions are freed only after every repack of the step
        out.push(...next);
        this.dirty.delete(family);
      } else {
        out.push(...mine);
      }
    }
    return out;
  }

  private resplit(family: Family, mine: Batch[]): Batch[] {
    const rows = mine.flatMap((b) => b.rows.filter(isLive));
    const { parts } = choosePartition(
      rows.map((r) => r.numComputedTokens),
      this.opts,
    );
    return parts.map((idx) => {
      const part = idx.map((i) => rows[i]);
      const same = mine.find((b) => b.rows.length === part.length && part.every((r) => b.rows.includes(r)));
      if (same) return same;
      const width = Math.max(...part.map((r) => r.numComputedTokens));
      const feeds = Math.max(...part.map((r) => r.maxTokens - r.numOutputTokens));
      return { id: this.nextBatchId++, family, rows: part, capacity: width + feeds };
    });
  }

  /** FCFS admission into prefill sub-batches while rows, prefill tokens and KV slots allow. */
  private admit(decodeSlots: number): Batch[] {
    const taken: Request[] = [];
    let groups: Batch[] = [];
    for (const req of this.waiting.toArray()) {
      if (this.running.length + taken.length >= this.opts.maxNumSeqs) break;
      if (this.running.length > 0 && this.stepId - req.arrivalStep < (this.opts.waitingSteps ?? 0)) break;
      const trial = this.prefillGroups([...taken, req]);
      const tokens = sum(trial.map((b) => b.rows.length * Math.max(...b.rows.map((r) => r.numPromptTokens))));
      if (taken.length > 0 && tokens > this.opts.maxNumBatchedTokens) break;
      if (decodeSlots + sum(trial.map(slotsOf)) > this.opts.numSlots) break;
      taken.push(req);
      groups = trial;
    }
    for (const req of taken) {
      this.waiting.remove(req);
      req.status = "running";
      this.running.push(req);
    }
    for (const b of groups) b.id = this.nextBatchId++;
    return groups;
  }

  private prefillGroups(reqs: Request[]): Batch[] {
    const groups: Batch[] = [];
    for (const family of ["greedy", "contrastive"] as const) {
      const mine = reqs.filter((r) => familyOf(r) === family);
      const { parts } = choosePartition(
        mine.map((r) => r.numPromptTokens),
        this.opts,
      );
      for (const idx of parts) {
        const rows = idx.map((i) => mine[i]);
        const width = Math.max(...rows.map((r) => r.numPromptTokens));
        // The prefill samples the first token; the rest are fed one per step.
        const feeds = Math.max(...rows.map((r) => r.maxTokens - 1));
        groups.push({ id: 0, family, rows, capacity: width + feeds });
      }
    }
    return groups;
  }

  /** Appends sampled tokens, checks token-level stops and finishes requests (their rows go at the next step). */
  updateFromOutput(plan: SchedulerOutput, out: ModelRunnerOutput): EngineCoreOutput[] {
    const outputs: EngineCoreOutput[] = [];
    for (const [reqId, n] of Object.entries(plan.numScheduledTokens)) {
      const req = this.requests.get(reqId);
      if (req === undefined || req.status !== "running") continue; // finished meanwhile
      const newTokenIds: number[] = [];
      let finishReason: FinishReason | null = null;
      for (const t of out.sampledTokenIds[reqId] ?? []) {
        req.appendOutputToken(t);
        newTokenIds.push(t);
        finishReason = checkStop(req, t, this.opts.maxModelLen);
        if (finishReason !== null) break;
      }
      if (newTokenIds.length === 0) {
        throw new Error(`the executor sampled no token for ${reqId}, which the padded path requires`);
      }
      if (finishReason !== null) this.finish(req, finishReason);
      outputs.push({
        reqId,
        newTokenIds,
        newLogprobs: (out.logprobs[reqId] ?? []).slice(0, newTokenIds.length),
        newPromptLogprobs: out.promptLogprobs[reqId] ?? null,
        promptLogprobsStart: req.numComputedTokens - n,
        finishReason,
        numCachedTokens: 0,
      });
    }
    return outputs;
  }

  stats(): SchedulerStats {
    return {
      numRunning: this.running.length,
      numWaiting: this.waiting.length,
      kvCacheUsage: this.slotUsage.reserved / this.opts.numSlots,
      numPreemptions: 0,
      prefixCacheQueries: 0,
      prefixCacheHits: 0,
    };
  }

  private finish(req: Request, reason: FinishReason): void {
    if (req.status === "running") {
      this.running = this.running.filter((r) => r !== req);
      this.dirty.add(familyOf(req));
    }
    req.status = "finished";
    req.finishReason = reason;
    if (req.isKnownToExecutor) this.finishedSinceLastStep.push(req.reqId);
    req.isKnownToExecutor = false;
    this.requests.delete(req.reqId);
  }
}

function wire(b: Batch): PaddedSubBatch {
  return { batchId: b.id, reqIds: b.rows.filter(isLive).map((r) => r.reqId), capacity: b.capacity };
}
