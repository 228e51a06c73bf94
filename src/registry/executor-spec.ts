// Which executor serves a model, as plain data (so the engine thread can build it) and built: the CPU
// reference executor (its own worker_thread) or the Python GPU executor. Checks that need the model's
// configuration run in executorSpecOf, on the thread that reads the configuration.

import type { ModelConfig } from "../config/model-config.ts";
import { ConfigError } from "../errors.ts";
import type { CpuExecutorOptions } from "../executor/cpu/index.ts";
import type { PythonExecutorOptions } from "../executor/python/python-executor.ts";
import type { Executor } from "../executor/types.ts";

export type ExecutorSpec =
  | { kind: "cpu"; options: CpuExecutorOptions }
  | { kind: "gpu"; options: PythonExecutorOptions };

type PythonDtype = NonNullable<PythonExecutorOptions["dtype"]>;

/** A config value that is a finite number, else undefined. */
export function num(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}

/** rolling_batch=scheduler (or paged_attention=false) runs padded sub-batches; the rest are paged. */
export function batchingOf(config: ModelConfig): "paged" | "padded" {
  return config.rollingBatch === "scheduler" || config.pagedAttention === false ? "padded" : "paged";
}

export function executorSpecOf(kind: "cpu" | "gpu", modelDir: string, config: ModelConfig): ExecutorSpec {
  if (kind === "cpu") {
    const kv = config.kvCacheDtype;
    if (kv === "fp8" || kv === "fp8_e4m3") {
      throw new ConfigError([
        `option.kv_cache_dtype=${kv} needs the GPU executor (--executor gpu on a CUDA GPU); the CPU executor keeps its KV cache in fp32`,
      ]);
    }
    return {
      kind: "cpu",
      options: {
        modelDir,
        kvLayout: batchingOf(config),
        maxModelLen: num(config.maxModelLen),
        kvCacheBytes: num(config.kvCacheBytes),
        blockSize: num(config.blockSize),
      },
    };
  }
  return { kind: "gpu", options: pythonExecutorOptionsOf(modelDir, config) };
}

export async function createExecutor(spec: ExecutorSpec): Promise<Executor> {
  if (spec.kind === "cpu") {
    // A worker_thread, so the event loop that drives it stays responsive while a step computes.
    const { createCpuExecutor } = await import("../executor/cpu/index.ts");
    return createCpuExecutor(spec.options);
  }
  const { createPythonExecutor } = await import("../executor/python/python-executor.ts");
  return createPythonExecutor(spec.options);
}

/** The model's LMI options as createPythonExecutor options (the GPU executor). */
export function pythonExecutorOptionsOf(modelDir: string, config: ModelConfig): PythonExecutorOptions {
  const tp = config.tensorParallelDegree;
  return {
    modelDir,
    pythonExecutable: config.pythonExecutable as string | undefined,
    tensorParallelDegree: typeof tp === "number" ? tp : undefined,
    mpiMode: Boolean(config.mpiMode),
    maxModelLen: num(config.maxModelLen),
    blockSize: num(config.blockSize),
    maxNumSeqs: num(config.maxRollingBatchSize),
    maxNumBatchedTokens: num(config.maxRollingBatchPrefillTokens),
    gpuMemoryUtilization: num(config.gpuMemoryUtilization),
    kvCacheDtype: typeof config.kvCacheDtype === "string" ? config.kvCacheDtype : undefined,
    // The config layer derives enforce_eager from option.enable_cuda_graph when that is set.
    enableCudaGraph: !config.enforceEager,
    // int8 selects the executor's weight-only int8 path.
    dtype: typeof config.dtype === "string" ? (config.dtype as PythonDtype) : undefined,
    loadFormat: config.loadFormat === "dummy" ? "dummy" : undefined,
    quantize: typeof config.quantize === "string" ? config.quantize : undefined,
    // A tensor-parallel checkpoint (relative to the model directory), re-sharded at load. training_mp_size is
    // passed only when set: its default (1) must not contradict the degree the checkpoint records.
    checkpoint:
      typeof config.checkpoint === "string" && config.checkpoint !== "" ? config.checkpoint : undefined,
    trainingMpSize:
      config.pythonProperties.training_mp_size !== undefined ? num(config.trainingMpSize) : undefined,
  };
}
