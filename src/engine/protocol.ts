// The engine's public API, as the HTTP layer sees it: what goes in (GenerateRequest with validated
// parameters) and what comes out (a stream of RequestOutput deltas). The server never touches the
// scheduler, KV cache or executors directly; it only calls LlmEngine.
// Parameter validation (spec §3.2) lives in engine/sampling-params.ts and produces GenerationParams.

import type { ModelInfo } from "../executor/types.ts";

export type DecodingStrategy = "greedy" | "sample" | "contrastive";
export type FinishReason = "length" | "eos_token" | "stop_sequence" | "abort" | "error";

/** Validated, defaulted generation parameters (spec §3.2), camelCase. */
export interface GenerationParams {
  maxNewTokens: number;
  /** Resolved strategy: do_sample=true forces "sample"; else decoding_strategy; else the server default. */
  strategy: DecodingStrategy;
  temperature: number;
  topK: number;
  topP: number;
  typicalP: number;
  minP: number;
  repetitionPenalty: number;
  presencePenalty: number;
  frequencyPenalty: number;
  logitBias: Record<number, number>;
  /** null when the user gave none (the engine draws one per request). */
  seed: number | null;
  stopSequences: string[];
  stopTokenIds: number[];
  includeStopStrInOutput: boolean;
  ignoreEos: boolean;
  minNewTokens: number;
  details: boolean;
  decoderInputDetails: boolean;
  topNTokens: number;
  returnFullText: boolean;
  penaltyAlpha: number;
  skipSpecialTokens: boolean;
  /** Truncate the prompt to its last N tokens (TGI `truncate`); null = no truncation. */
  truncate: number | null;
}

export interface GenerateRequest {
  requestId: string;
  /** Text prompt (tokenized by the engine), or pre-tokenized ids (token-id prompts, chat already templated). */
  prompt: string | { tokenIds: number[] };
  params: GenerationParams;
}

export interface TopToken {
  id: number;
  text: string;
  logprob: number;
  special: boolean;
}

export interface TokenInfo {
  id: number;
  /** The text this token adds to the output (may be "" while a multi-byte character is incomplete). */
  text: string;
  logprob: number;
  special: boolean;
  /** Top alternatives when topNTokens > 0, highest first. */
  top?: TopToken[];
}

/** One delta of one request. The last one has finished=true and the summary fields. */
export interface RequestOutput {
  requestId: string;
  /** Tokens produced since the previous delta (possibly none: a prefill chunk produces no token). */
  tokens: TokenInfo[];
  /** Text produced since the previous delta, with stop sequences already removed. */
  textDelta: string;
  finished: boolean;
  finishReason?: FinishReason;
  /** Set when finishReason is "error". */
  error?: string;
  // Present on the final delta:
  /** The whole generated text (without the prompt; the server prepends it for return_full_text). */
  generatedText?: string;
  numPromptTokens?: number;
  numGeneratedTokens?: number;
  /** Prompt tokens with logprobs (first has logprob NaN->null), when decoderInputDetails. */
  prefill?: Array<{ id: number; text: string; logprob: number | null }>;
  /** The seed used for sampling (the user's, or the one the engine drew). */
  seed?: number;
}

export interface EngineStats {
  numRunning: number;
  numWaiting: number;
  /** Fraction of KV blocks in use, 0..1. */
  kvCacheUsage: number;
  numPreemptions: number;
  numPromptTokensTotal: number;
  numGenerationTokensTotal: number;
  prefixCacheHitRate: number;
}

export interface ChatMessage {
  role: string;
  content: string | Array<{ type: string; text?: string; image_url?: { url: string } }>;
  [key: string]: unknown;
}

export interface LlmEngine {
  readonly modelInfo: ModelInfo;
  /** Encode text to token ids (adds special tokens as the tokenizer's post-processor says). */
  encode(text: string, addSpecialTokens?: boolean): number[];
  decode(ids: number[], skipSpecialTokens?: boolean): string;
  /** Render messages with the model's chat template (throws ValidationError when there is none). */
  applyChatTemplate(
    messages: ChatMessage[],
    options?: { tools?: unknown[]; addGenerationPrompt?: boolean },
  ): string;
  /**
   * Start a generation. Throws synchronously-validated errors (PromptTooLongError, OverloadedError,
   * EngineDeadError) by rejecting the first iteration. Aborting the signal ends the stream with
   * finishReason "abort" and frees the request's KV blocks at the next step.
   */
  generate(request: GenerateRequest, signal?: AbortSignal): AsyncIterable<RequestOutput>;
  stats(): EngineStats;
  shutdown(): Promise<void>;
}
