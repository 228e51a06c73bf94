// Builds the paged engine behind a model: the executor chosen by `lmi serve --executor` (the CPU
// reference executor here, or the Python GPU executor; executor-spec.ts) plus src/engine, with the model's
// rolling-batch options mapped to EngineOptions, in this thread or on one of its own (option.engine_thread).
// Also watches the engine so a death reaches the registry, which restarts the model (registry.reportDeath).

import type { ModelConfig } from "../config/model-config.ts";
import { createLlmEngine, type EngineOptions } from "../engine/engine.ts";
import type { DecodingStrategy } from "../engine/protocol.ts";
import { ThreadEngine } from "../engine/thread/thread-engine.ts";
import { batchingOf, createExecutor, executorSpecOf, num } from "./executor-spec.ts";
import type { EngineBuilder } from "./model-loader.ts";

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

/** option.engine_thread: auto runs the engine on its own thread with the GPU executor only. */
export function usesEngineThread(config: ModelConfig, executor: "cpu" | "gpu"): boolean {
  const v = config.engineThread;
  return v === "auto" || v === undefined ? executor === "gpu" : Boolean(v);
}

export const buildEngine: EngineBuilder = async ({ modelDir, config, executor, logger }) => {
  const spec = executorSpecOf(executor, modelDir, config);
  const options = {
    ...engineOptionsOf(config),
    logger: { warn: (m: string) => logger.warn(m), info: (m: string) => logger.info(m) },
  };
  const engine = usesEngineThread(config, executor)
    ? await ThreadEngine.start({ modelDir, executor: spec, options })
    : await createLlmEngine({ executor: await createExecutor(spec), modelDir, options });
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
