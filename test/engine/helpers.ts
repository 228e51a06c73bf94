// Test helpers for the pure engine core, in the style of vLLM tests/v1/core/utils.py:
// createScheduler(opts), createRequests(n), fakeRunnerOutput(...) and a step() that runs both and
// checks the KV invariants after every step.

import { Request } from "../../src/engine/request.ts";
import {
  type EngineCoreOutput,
  Scheduler,
  type SchedulerOptions,
} from "../../src/engine/scheduler/scheduler.ts";
import { neutralSamplingSettings } from "../../src/executor/testing/sampling-settings.ts";
import type { ModelRunnerOutput, SamplingSettings, SchedulerOutput } from "../../src/executor/types.ts";

export const EOS = 2;

export function samplingSettings(overrides: Partial<SamplingSettings> = {}): SamplingSettings {
  return neutralSamplingSettings({ seed: 1234, eosTokenIds: [EOS], ...overrides });
}

export function createScheduler(opts: Partial<SchedulerOptions> = {}): Scheduler {
  return new Scheduler({
    maxNumSeqs: 16,
    maxNumBatchedTokens: 64,
    blockSize: 16,
    numBlocks: 100,
    enablePrefixCaching: true,
    maxModelLen: 1024,
    ...opts,
  });
}

export interface RequestSpec {
  numTokens?: number;
  maxTokens?: number;
  /** Prompt token ids; default: distinct per request so no accidental prefix hits. */
  prompt?: number[];
  sampling?: Partial<SamplingSettings>;
  stopTokenIds?: number[];
  idPrefix?: string;
}

let uniq = 0;
export function createRequests(n: number, spec: RequestSpec = {}): Request[] {
  const out: Request[] = [];
  for (let i = 0; i < n; i++) {
    const base = 1000 + 100_000 * uniq++;
    const prompt = spec.prompt ?? Array.from({ length: spec.numTokens ?? 10 }, (_, j) => base + j);
    out.push(
      new Request({
        reqId: `${spec.idPrefix ?? "req"}-${i}`,
        promptTokenIds: prompt,
        sampling: samplingSettings(spec.sampling),
        maxTokens: spec.maxTokens ?? 16,
        stopTokenIds: spec.stopTokenIds,
      }),
    );
  }
  return out;
}

/**
 * What an executor would return for a plan: one sampled token for each request whose prompt is
 * fully computed after this step, none for a request still in chunked prefill.
 * tokenFor(reqId, numOutputTokensSoFar) chooses the token (default 7, never eos).
 */
export function fakeRunnerOutput(
  sched: Scheduler,
  plan: SchedulerOutput,
  tokenFor: (reqId: string, numOutput: number) => number = () => 7,
): ModelRunnerOutput {
  const out: ModelRunnerOutput = {
    stepId: plan.stepId,
    sampledTokenIds: {},
    logprobs: {},
    promptLogprobs: {},
  };
  for (const reqId of Object.keys(plan.numScheduledTokens)) {
    const req = sched.getRequest(reqId)!;
    if (req.numComputedTokens < req.numTokens) continue;
    const t = tokenFor(reqId, req.numOutputTokens);
    out.sampledTokenIds[reqId] = [t];
    out.logprobs[reqId] = [{ logprob: -0.5, top: [] }];
  }
  return out;
}

/** One full step: schedule, fake execution, update; checks KV invariants. */
export function step(
  sched: Scheduler,
  tokenFor?: (reqId: string, numOutput: number) => number,
): { plan: SchedulerOutput; outputs: EngineCoreOutput[] } {
  const plan = sched.schedule();
  sched.kv.pool.checkInvariants();
  const outputs = sched.updateFromOutput(plan, fakeRunnerOutput(sched, plan, tokenFor));
  sched.kv.pool.checkInvariants();
  return { plan, outputs };
}
