// Builds the paged engine behind a model: the executor chosen by `lmi serve --executor` (the CPU
// reference executor here, or the Python GPU executor) plus src/engine, with the model's rolling-batch
// options mapped to EngineOptions. Also watches the engine so a death reaches the registry, which
// restarts the model (registry.reportDeath).

import type { ModelConfig } from "../config/model-config.ts";
import { createLlmEngine, type EngineOptions } from "../engine/engine.ts";
import type { DecodingStrategy } from "../engine/protocol.ts";
import { ConfigError } from "../errors.ts";
import { createCpuExecutor } from "../executor/cpu/index.ts";
import type { PythonExecutorOptions } from "../executor/python/python-executor.ts";
import type { Executor } from "../executor/types.ts";
import type { EngineBuilder } from "./model-loader.ts";

type PythonDtype = NonNullable<PythonExecutorOptions["dtype"]>;

function num(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}

/** rolling_batch=scheduler (or paged_attention=false) runs padded sub-batches; the rest are paged. */
export function batchingOf(config: ModelConfig): "paged" | "padded" {
  return config.rollingBatch === "scheduler" || config.pagedAttention === false ? "padded" : "paged";
}

export function engineOptionsOf(config: ModelConfig): EngineOptions {
  const batching = batchingOf(config);
  return {
    batching,
    ...(batching === "padded"
      ? { maxSparsity: num(config.maxSparsity), maxSplits: num(config.maxSplits) }
      : {}),
    maxNumSeqs: num(config.maxRollingBatchSize),
    maxNumBatchedTokens: num(config.maxRollingBatchPrefillTokens),
    enablePrefixCaching: config.enablePrefixCaching as boolean | undefined,
    maxModelLen: num(config.maxModelLen),
    jobQueueSize: num(config.jobQueueSize),
    defaultStrategy: config.decodingStrategy as DecodingStrategy | undefined,
    waitingSteps: num(config.waitingSteps),
    enableChunkedPrefill: config.enableChunkedPrefill as boolean | undefined,
  };
}

async function createExecutor(kind: "cpu" | "gpu", modelDir: string, config: ModelConfig): Promise<Executor> {
  if (kind === "cpu") {
    const kv = config.kvCacheDtype;
    if (kv === "fp8" || kv === "fp8_e4m3") {
      throw new ConfigError([
        `option.kv_cache_dtype=${kv} needs the GPU executor (--executor gpu on a CUDA GPU); the CPU executor keeps its KV cache in fp32`,
      ]);
    }
    // A worker_thread, so the HTTP event loop stays responsive while a step computes.
    return createCpuExecutor({
      modelDir,
      kvLayout: batchingOf(config),
      maxModelLen: num(config.maxModelLen),
      kvCacheBytes: num(config.kvCacheBytes),
      blockSize: num(config.blockSize),
    });
  }
  const { createPythonExecutor } = await import("../executor/python/python-executor.ts");
  return createPythonExecutor(pythonExecutorOptionsOf(modelDir, config));
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

export const buildEngine: EngineBuilder = async ({ modelDir, config, executor, logger }) => {
  const exec = await createExecutor(executor, modelDir, config);
  const options = {
    ...engineOptionsOf(config),
    logger: { warn: (m: string) => logger.warn(m), info: (m: string) => logger.info(m) },
  };
  const engine = await createLlmEngine({ executor: exec, modelDir, options });
  const listeners: Array<(err: Error) => void> = [];
  // The engine fails its own in-flight requests on a death and tells us at once (not on shutdown), so
  // the registry marks the model restarting before any new request or /ping can see it as healthy.
  engine.onDeath((reason) => {
    const err = new Error(reason);
    for (const l of listeners) l(err);
  });
  return {
    backend: {
      kind: "engine",
      engine,
      validateParameters: (raw) => {
        const v = engine.validateParameters(raw);
        for (const w of v.warnings) logger.warn(w);
        return v.params;
      },
      onDeath: (l) => listeners.push(l),
    },
    close: async () => {
      await engine.shutdown();
    },
  };
};
