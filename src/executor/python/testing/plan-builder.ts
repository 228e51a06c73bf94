// Builds SchedulerOutput plans for executor tests the way the engine would: blocks from a free list,
// new requests once, then deltas; records sampled tokens. Not a scheduler: tests say what runs each step.

import { neutralSamplingSettings } from "../../testing/sampling-settings.ts";
import type { ModelRunnerOutput, SamplingSettings, SchedulerOutput } from "../../types.ts";

export function greedySettings(over: Partial<SamplingSettings> = {}): SamplingSettings {
  return neutralSamplingSettings(over);
}

interface Tracked {
  tokens: number[];
  promptLen: number;
  blocks: number[];
  computed: number;
}

export class PlanBuilder {
  readonly reqs = new Map<string, Tracked>();
  private step = 0;
  private readonly free: number[];

  constructor(
    numBlocks: number,
    private readonly blockSize: number,
  ) {
    // Hand out blocks in a scrambled order so slot mapping bugs cannot hide behind identity tables.
    this.free = Array.from({ length: numBlocks }, (_, i) => (i * 7919) % numBlocks);
  }

  private grow(t: Tracked, upto: number): number[] {
    const need = Math.ceil(upto / this.blockSize) - t.blocks.length;
    const fresh: number[] = [];
    for (let i = 0; i < need; i++) {
      const b = this.free.pop();
      if (b === undefined) throw new Error("test ran out of KV blocks");
      fresh.push(b);
    }
    t.blocks.push(...fresh);
    return fresh;
  }

  plan(opts: {
    add?: Array<{ id: string; prompt: number[]; n?: number; sampling?: SamplingSettings }>;
    run?: Array<{ id: string; n: number }>;
    finished?: string[];
  }): SchedulerOutput {
    const p: SchedulerOutput = {
      stepId: ++this.step,
      scheduledNewReqs: [],
      scheduledCachedReqs: [],
      numScheduledTokens: {},
      totalNumScheduledTokens: 0,
      finishedReqIds: opts.finished ?? [],
      preemptedReqIds: [],
    };
    for (const a of opts.add ?? []) {
      const t: Tracked = { tokens: [...a.prompt], promptLen: a.prompt.length, blocks: [], computed: 0 };
      this.reqs.set(a.id, t);
      const n = a.n ?? a.prompt.length;
      this.grow(t, n);
      p.scheduledNewReqs.push({
        reqId: a.id,
        promptTokenIds: [...a.prompt],
        sampling: a.sampling ?? greedySettings(),
        blockIds: [...t.blocks],
        numComputedTokens: 0,
      });
      p.numScheduledTokens[a.id] = n;
    }
    for (const r of opts.run ?? []) {
      const t = this.reqs.get(r.id);
      if (!t) throw new Error(`unknown test request ${r.id}`);
      const fresh = this.grow(t, t.computed + r.n);
      p.scheduledCachedReqs.push({
        reqId: r.id,
        newBlockIds: fresh,
        numComputedTokens: t.computed,
        resumedFromPreemption: false,
      });
      p.numScheduledTokens[r.id] = r.n;
    }
    p.totalNumScheduledTokens = Object.values(p.numScheduledTokens).reduce((a, b) => a + b, 0);
    return p;
  }

  /** Call with each plan's output: advances computed counts and appends sampled tokens. */
  record(plan: SchedulerOutput, out: ModelRunnerOutput): void {
    this.advance(plan);
    this.append(out);
  }

  /** A plan sent: its tokens count as computed, so the next plan can follow before its output is back
   * (pipelined steps: a decode of a token still being sampled). */
  advance(plan: SchedulerOutput): void {
    for (const [id, n] of Object.entries(plan.numScheduledTokens)) {
      const t = this.reqs.get(id);
      if (t) t.computed += n;
    }
  }

  /** A plan's output: its sampled tokens join their requests. */
  append(out: ModelRunnerOutput): void {
    for (const [id, toks] of Object.entries(out.sampledTokenIds)) this.reqs.get(id)?.tokens.push(...toks);
  }

  generated(id: string): number[] {
    const t = this.reqs.get(id);
    return t ? t.tokens.slice(t.promptLen) : [];
  }
}
