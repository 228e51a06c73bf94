// Maps a model's typed configuration (src/config ModelConfig + the registry's ServingOptions) onto
// createHandlerModel's options, so the mapping of LMI keys to the handler path lives in one place.
// Invariants: every option.* the user set reaches the init request (pythonProperties); typed values
// are translated, never re-parsed (tensor_parallel_degree=max -> 0 = every device of the worker).

import type { ModelConfig } from "../config/model-config.ts";
import type { ServingOptions } from "../registry/types.ts";
import type { HandlerModelOptions } from "./handler-model.ts";

export function handlerOptionsFromConfig(
  config: ModelConfig,
  serving: Pick<
    ServingOptions,
    | "minWorkers"
    | "maxWorkers"
    | "batchSize"
    | "maxBatchDelayMillis"
    | "jobQueueSize"
    | "retryThreshold"
    | "maxIdleSeconds"
  >,
  extra: Partial<HandlerModelOptions> = {},
): HandlerModelOptions {
  const tp = config.tensorParallelDegree;
  const devices = config.loadOnDevices;
  return {
    entryPoint: typeof config.entryPoint === "string" ? config.entryPoint : undefined,
    handler: typeof config.handler === "string" ? config.handler : undefined,
    pythonExecutable: typeof config.pythonExecutable === "string" ? config.pythonExecutable : undefined,
    minWorkers: serving.minWorkers,
    maxWorkers: Math.max(serving.maxWorkers, serving.minWorkers),
    batchSize: serving.batchSize,
    maxBatchDelayMs: serving.maxBatchDelayMillis,
    jobQueueSize: serving.jobQueueSize,
    retryThreshold: serving.retryThreshold,
    maxIdleS: serving.maxIdleSeconds,
    modelLoadingTimeoutS: Number(config.modelLoadingTimeout),
    predictTimeoutS: Number(config.predictTimeout),
    loadOnDevices: Array.isArray(devices)
      ? devices.join(";")
      : devices === undefined
        ? undefined
        : String(devices),
    env: (config.env as Record<string, string> | undefined) ?? undefined,
    mpiMode: Boolean(config.mpiMode),
    tensorParallelDegree: tp === "max" ? 0 : typeof tp === "number" ? tp : 1,
    pipelineParallelDegree:
      typeof config.pipelineParallelDegree === "number" ? config.pipelineParallelDegree : 1,
    properties: { ...config.pythonProperties },
    ...extra,
  };
}
