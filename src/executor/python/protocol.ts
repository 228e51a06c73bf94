// Message shapes of the executor protocol between Node and the Python GPU executor's rank 0.
// Requests are {id, type, ...}; replies {id, ok: true, result} or {id, ok: false, error}. Invariant:
// PROTOCOL_VERSION matches python/lmi_executor/__init__.py; `hello` refuses any other version.
import type { CacheProfile, ModelInfo, ModelRunnerOutput, SchedulerOutput } from "../types.ts";

export const PROTOCOL_VERSION = 1;

export type RequestMessage =
  | { type: "hello"; version: number }
  | { type: "load" }
  | { type: "profile" }
  | { type: "initCache"; numBlocks: number }
  | { type: "execute"; plan: SchedulerOutput }
  | { type: "health" }
  | { type: "shutdown" };

export interface HelloResult {
  version: number;
  pid: number;
  torch: string;
  device: string;
  worldSize: number;
  capabilities: string[];
  /** With "pipelined-steps": how many execute calls may be in flight at once (older executors: 2). */
  maxStepsInFlight?: number;
}

export interface LoadResult extends ModelInfo {
  loadSeconds: number;
  weightBytes: number;
}

export interface InitCacheResult {
  numBlocks: number;
  cudaGraphSeconds: number;
  cudaGraphBatchSizes: number[];
  /** Token buckets of the single-sequence prefill graphs (empty when off), their capture time. */
  prefillGraphTokens?: number[];
  prefillGraphSeconds?: number;
  /** GPU memory the decode / prefill graphs hold (PyTorch's reserved bytes, cache emptied, before and after capture). */
  cudaGraphBytes?: number;
  prefillGraphBytes?: number;
}

export interface HealthResult {
  ok: boolean;
  rank: number;
  loaded: boolean;
  numBlocks: number;
  gpuFreeBytes?: number;
  gpuTotalBytes?: number;
}

export interface ResultByType {
  hello: HelloResult;
  load: LoadResult;
  profile: CacheProfile;
  initCache: InitCacheResult;
  execute: ModelRunnerOutput;
  health: HealthResult;
  shutdown: Record<string, never>;
}

export interface ErrorReply {
  message: string;
  traceback?: string;
  oom?: boolean;
}

export type Reply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: ErrorReply };

/** Options the Python side takes (python/lmi_executor/config.py ExecutorOptions), in its snake_case. */
export interface PythonExecutorOptionsWire {
  model_dir: string;
  device: "cuda" | "cpu";
  dtype: string;
  quantize: string;
  load_format: string;
  tensor_parallel_degree: number;
  enable_cuda_graph: boolean;
  gpu_memory_utilization: number;
  kv_cache_dtype: string;
  max_model_len: number;
  block_size: number;
  max_num_seqs: number;
  attention_backend: string;
  parallel_loading: boolean;
  seed: number;
  dist_init_method: string;
  cpu_kv_cache_bytes: number;
  max_num_batched_tokens: number;
  checkpoint: string;
  training_mp_size: number;
  pipeline_steps: boolean;
}
