// The contract between the engine core (scheduler) and every executor (CPU worker_thread, Python GPU ranks).
// The scheduler decides; the executor computes one step and samples. Names follow vLLM v1:
// SchedulerOutput is the plan for one step, ModelRunnerOutput is what the executor did.
// Invariants: new requests cross in full exactly once (scheduledNewReqs); afterwards only deltas
// (scheduledCachedReqs). A request preempted by recomputation re-crosses as a cached request with
// resumedFromPreemption=true and its full block table. Token ids the executor sampled itself are already
// known to it; the scheduler never re-sends them except on resume.

import type { PaddedLayout } from "./padded-types.ts";

/** Per-request sampling settings, resolved and validated by the engine (no defaults left to fill). */
export interface SamplingSettings {
  /** "greedy" ignores temperature/topK/topP/typicalP; "contrastive" uses penaltyAlpha and topK. */
  strategy: "greedy" | "sample" | "contrastive";
  temperature: number; // > 0 when strategy is "sample"
  topK: number; // 0 = disabled
  topP: number; // 1 = disabled
  typicalP: number; // 1 = disabled
  minP: number; // 0 = disabled
  repetitionPenalty: number; // 1 = disabled (HF semantics: divide positive logits, multiply negative)
  presencePenalty: number; // 0 = disabled (OpenAI semantics)
  frequencyPenalty: number; // 0 = disabled (OpenAI semantics)
  /** Additive bias per token id (OpenAI logit_bias). Empty = none. */
  logitBias: Record<number, number>;
  /** Always set: the engine draws one when the user gave none, so all ranks sample alike. */
  seed: number;
  /** Contrastive search degeneration penalty (HF penalty_alpha). */
  penaltyAlpha: number;
  /** Number of top alternatives to return per generated token (0 = none). Chosen-token logprob is always returned. */
  numTopLogprobs: number;
  /** Return logprobs of the prompt tokens (decoder_input_details / prompt_logprobs). */
  promptLogprobs: boolean;
  /** Token ids that may not be sampled before minNewTokens are produced; used for eos suppression. */
  minTokens: number;
  eosTokenIds: number[];
  ignoreEos: boolean;
}

export interface NewRequestData {
  reqId: string;
  promptTokenIds: number[];
  sampling: SamplingSettings;
  /** KV block ids for this request, in order; covers at least numComputedTokens + scheduled tokens. */
  blockIds: number[];
  /** Tokens whose KV is already in the cache (prefix-cache hit); the executor starts computing here. */
  numComputedTokens: number;
}

export interface CachedRequestData {
  reqId: string;
  /** Block ids appended to this request's table since the last step (full table when resumed). */
  newBlockIds: number[];
  numComputedTokens: number;
  /** True when the request was preempted and is scheduled again: the executor must replace its state. */
  resumedFromPreemption: boolean;
  /** Only when resumed: every token id of the request (prompt + generated so far). */
  allTokenIds?: number[];
}

export interface SchedulerOutput {
  stepId: number;
  scheduledNewReqs: NewRequestData[];
  scheduledCachedReqs: CachedRequestData[];
  /** reqId -> number of tokens to compute in this step (chunked prefill: may be less than the prompt). */
  numScheduledTokens: Record<string, number>;
  totalNumScheduledTokens: number;
  /** Requests finished or aborted since the last step: the executor drops their state. */
  finishedReqIds: string[];
  /** Requests preempted since the last step: the executor drops their state (they return resumed). */
  preemptedReqIds: string[];
  /** Set only by the padded scheduler (rolling_batch=scheduler): the step's sub-batches. */
  padded?: PaddedLayout;
}

/** Logprob information for one position. */
export interface TokenLogprobs {
  /** Logprob of the token actually chosen (or, for prompt positions, the actual next prompt token). */
  logprob: number;
  /** Top alternatives, highest first: [tokenId, logprob]. Length = numTopLogprobs. */
  top: Array<[number, number]>;
}

export interface ModelRunnerOutput {
  stepId: number;
  /** reqId -> tokens sampled in this step: empty while a prompt is still being prefilled in chunks. */
  sampledTokenIds: Record<string, number[]>;
  /** reqId -> logprobs of each sampled token (same length as sampledTokenIds[reqId]). */
  logprobs: Record<string, TokenLogprobs[]>;
  /**
   * reqId -> logprobs of prompt tokens scored this step (only when promptLogprobs). Logits at position p
   * score token p+1, so a step computing positions s..e-1 gives tokens s+1..min(e, promptLen-1); a step
   * starting at s=0 leads with null for token 0, which has none.
   */
  promptLogprobs: Record<string, Array<TokenLogprobs | null>>;
}

/** What the executor tells the engine about the loaded model. */
export interface ModelInfo {
  architecture: string;
  modelType: string;
  vocabSize: number;
  /** Longest sequence (prompt + generated) the model or the user's max_tokens/n_positions allows. */
  maxModelLen: number;
  eosTokenIds: number[];
  bosTokenId: number | null;
  dtype: string;
}

export interface CacheProfile {
  /** How many KV blocks of blockSize tokens fit in the memory budget. */
  numBlocks: number;
  blockSize: number;
  /** Bytes one block takes across all layers (K and V). */
  bytesPerBlock: number;
  /**
   * "padded": the executor runs only padded plans (SchedulerOutput.padded, contiguous KV per sub-batch)
   * and numBlocks x blockSize is its token-slot budget. Absent means "paged".
   */
  kvLayout?: "paged" | "padded";
  /**
   * Positions of hidden states the executor keeps at once for contrastive search, across requests, in whole
   * chunks of contrastiveChunk positions (the GPU executor's fixed pool). The scheduler admits a contrastive
   * request only while every admitted one's prompt + max tokens, each rounded up to chunks, fit. Absent: no limit.
   */
  contrastivePositions?: number;
  contrastiveChunk?: number;
}

export interface ExecutorHealth {
  ok: boolean;
  detail?: string;
}

/**
 * One executor: a model on some device(s). Calls are answered in order. The engine may send up to
 * maxStepsInFlight execute() calls before awaiting the first: the executor then runs them in order and
 * feeds each request's latest sampled token to its next step itself (a plan may schedule a token the
 * engine has not seen yet). Errors reject with ExecutorError (see errors.ts).
 */
export interface Executor {
  /** How many execute() calls may be outstanding at once (default 1: each is awaited before the next). */
  readonly maxStepsInFlight?: number;
  load(): Promise<ModelInfo>;
  profile(): Promise<CacheProfile>;
  initCache(numBlocks: number): Promise<void>;
  execute(plan: SchedulerOutput): Promise<ModelRunnerOutput>;
  health(): Promise<ExecutorHealth>;
  shutdown(): Promise<void>;
  /** Called once when the executor dies on its own (thread crash, process exit). */
  onDeath(listener: (err: Error) => void): void;
}
