// One generation request inside the engine core: its tokens, how many of them have KV computed,
// its sampling settings and its lifecycle status. No prefill/decode mode: the scheduler only looks at
// numComputedTokens versus numTokens (plus samples still on their way back from the executor).
// Invariant: allTokenIds = prompt followed by every generated token that has come back.

import type { SamplingSettings } from "../executor/types.ts";
import type { FinishReason } from "./protocol.ts";

export type RequestStatus = "waiting" | "running" | "preempted" | "finished";

export interface RequestInit {
  reqId: string;
  promptTokenIds: readonly number[];
  sampling: SamplingSettings;
  /** Most tokens to generate (already capped so that prompt + output fits maxModelLen). */
  maxTokens: number;
  /** User stop token ids (stop_token_ids); eos ids live in sampling.eosTokenIds. */
  stopTokenIds?: readonly number[];
}

export class Request {
  readonly reqId: string;
  readonly promptTokenIds: readonly number[];
  readonly sampling: SamplingSettings;
  readonly maxTokens: number;
  readonly stopTokenIds: readonly number[];
  /** Prompt then generated tokens; grows by appendOutputToken only. */
  readonly allTokenIds: number[];
  numComputedTokens = 0;
  /** Tokens served by the prefix cache on first admission; -1 until admitted. */
  numCachedTokens = -1;
  status: RequestStatus = "waiting";
  finishReason: FinishReason | null = null;
  numPreemptions = 0;
  /** True once the executor holds state for it: from its first scheduling until it finishes. */
  isKnownToExecutor = false;
  /** Scheduler step at which it arrived (option.waiting_steps). */
  arrivalStep = 0;
  /**
   * Tokens sampled by steps already sent to the executor whose outputs have not come back yet (with
   * steps pipelined, the next step is scheduled before the previous one's output arrives). The executor
   * feeds such a token to the next step itself; the scheduler counts it as known but not yet in allTokenIds.
   */
  numPendingSamples = 0;
  /** Outputs of steps with a smaller id are stale (the request was preempted after they were sent). */
  ignoreOutputsBefore = 0;

  constructor(init: RequestInit) {
    if (init.promptTokenIds.length === 0) throw new Error(`request ${init.reqId} has an empty prompt`);
    this.reqId = init.reqId;
    this.promptTokenIds = init.promptTokenIds;
    this.sampling = init.sampling;
    this.maxTokens = init.maxTokens;
    this.stopTokenIds = init.stopTokenIds ?? [];
    this.allTokenIds = [...init.promptTokenIds];
  }

  get numTokens(): number {
    return this.allTokenIds.length;
  }

  /** Tokens the executor will know when it runs the next step: allTokenIds plus pending samples. */
  get numTokensWithPending(): number {
    return this.allTokenIds.length + this.numPendingSamples;
  }

  get numPromptTokens(): number {
    return this.promptTokenIds.length;
  }

  get numOutputTokens(): number {
    return this.allTokenIds.length - this.promptTokenIds.length;
  }

  get isFinished(): boolean {
    return this.status === "finished";
  }

  appendOutputToken(tokenId: number): void {
    this.allTokenIds.push(tokenId);
  }
}
