// Engine options (the rolling-batch LMI keys, already mapped to camelCase by the config layer) and
// their defaults, checked once at startup with errors that name the LMI key.

import { ConfigError } from "../errors.ts";
import type { DecodingStrategy } from "./protocol.ts";

export interface EngineOptions {
  /** option.max_rolling_batch_size: most requests running at once. Default 32 (DJL's default). */
  maxNumSeqs?: number;
  /**
   * option.max_rolling_batch_prefill_tokens: the per-step token budget (vLLM max_num_batched_tokens).
   * Default 4096, lmi-dist's default. Longer prompts are prefilled in chunks, never rejected for it.
   */
  maxNumBatchedTokens?: number;
  /** Tokens per KV block; must match the executor's profile (the executor owns the memory layout). */
  blockSize?: number;
  /** KV blocks to allocate; default: what executor.profile() says fits. */
  numBlocks?: number;
  /** option.enable_prefix_caching; default true. */
  enablePrefixCaching?: boolean;
  /** option.max_model_len: caps the model's own limit (never raises it). */
  maxModelLen?: number;
  /** job_queue_size: most waiting (not yet running) requests; more are refused with 503. Default 1000. */
  jobQueueSize?: number;
  /** option.decoding_strategy: strategy for requests that say neither do_sample nor decoding_strategy. */
  defaultStrategy?: DecodingStrategy;
  /** option.waiting_steps: steps a new request waits while others run (classic rolling batch). */
  waitingSteps?: number;
  /**
   * option.enable_chunked_prefill: true (default) mixes decode rows into steps with prompt chunks (vLLM v1);
   * false runs prompt work in steps of its own first (lmi-dist, vLLM v0). Paged batching only.
   */
  enableChunkedPrefill?: boolean;
  /** Default max_new_tokens (LMI rolling batch: 30). */
  defaultMaxNewTokens?: number;
  /**
   * "padded": option.rolling_batch=scheduler (or option.paged_attention=false), padded sub-batches with
   * contiguous KV (src/engine/padded); needs an executor whose profile says kvLayout "padded". Default "paged".
   */
  batching?: "paged" | "padded";
  /** option.max_sparsity (padded only): most padding fraction before a batch is split. Default 0.33. */
  maxSparsity?: number;
  /** option.max_splits (padded only): most sub-batches. Default 3. */
  maxSplits?: number;
  logger?: { warn(msg: string): void; info(msg: string): void };
}

export type ResolvedEngineOptions = Required<Omit<EngineOptions, "numBlocks" | "maxModelLen" | "blockSize">> &
  Pick<EngineOptions, "numBlocks" | "maxModelLen" | "blockSize">;

const KEYS: Record<string, string> = {
  maxNumSeqs: "option.max_rolling_batch_size",
  maxNumBatchedTokens: "option.max_rolling_batch_prefill_tokens",
  blockSize: "option.block_size",
  numBlocks: "option.num_gpu_blocks_override",
  maxModelLen: "option.max_model_len",
  jobQueueSize: "job_queue_size",
  waitingSteps: "option.waiting_steps",
  defaultMaxNewTokens: "max_new_tokens",
  maxSplits: "option.max_splits",
};

export function resolveEngineOptions(o: EngineOptions = {}): ResolvedEngineOptions {
  const problems: string[] = [];
  const positive = (k: keyof EngineOptions, min = 1) => {
    const v = o[k];
    if (v !== undefined && (typeof v !== "number" || !Number.isInteger(v) || v < min)) {
      problems.push(`${KEYS[k]} must be an integer >= ${min}, got ${String(v)}`);
    }
  };
  for (const k of [
    "maxNumSeqs",
    "maxNumBatchedTokens",
    "blockSize",
    "numBlocks",
    "maxModelLen",
    "jobQueueSize",
    "defaultMaxNewTokens",
    "maxSplits",
  ] as const) {
    positive(k);
  }
  positive("waitingSteps", 0);
  if (o.defaultStrategy !== undefined && !["greedy", "sample", "contrastive"].includes(o.defaultStrategy)) {
    problems.push(
      `option.decoding_strategy must be one of greedy, sample, contrastive, got ${o.defaultStrategy}`,
    );
  }
  if (o.maxSparsity !== undefined && !(o.maxSparsity >= 0 && o.maxSparsity <= 1)) {
    problems.push(`option.max_sparsity must be a number in [0, 1], got ${String(o.maxSparsity)}`);
  }
  if (o.batching !== undefined && o.batching !== "paged" && o.batching !== "padded") {
    problems.push(`batching must be paged or padded, got ${String(o.batching)}`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return {
    maxNumSeqs: o.maxNumSeqs ?? 32,
    maxNumBatchedTokens: o.maxNumBatchedTokens ?? 4096,
    blockSize: o.blockSize,
    numBlocks: o.numBlocks,
    enablePrefixCaching: o.enablePrefixCaching ?? true,
    maxModelLen: o.maxModelLen,
    jobQueueSize: o.jobQueueSize ?? 1000,
    defaultStrategy: o.defaultStrategy ?? "greedy",
    waitingSteps: o.waitingSteps ?? 0,
    enableChunkedPrefill: o.enableChunkedPrefill ?? true,
    defaultMaxNewTokens: o.defaultMaxNewTokens ?? 30,
    batching: o.batching ?? "paged",
    maxSparsity: o.maxSparsity ?? 0.33,
    maxSplits: o.maxSplits ?? 3,
    logger: o.logger ?? { warn: (m) => console.warn(m), info: () => {} },
  };
}
