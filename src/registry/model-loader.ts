// Turns a registration (ModelSpec) into a running backend: resolves the model location (local dir,
// hub id, s3://), loads the model's config (serving.properties + OPTION_* env), decides the path —
// the paged engine (rolling_batch auto/lmi-dist/vllm/deepspeed/scheduler) or the Python handler
// (rolling_batch=disable, a model.py, a non-built-in entry point) — builds it and logs the choice.
// Invariant: every decision is logged with its reason; unsupported runtimes fail with a clear error.

import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { loadModelConfig, type ModelConfig } from "../config/model-config.ts";
import type { ServerConfig } from "../config/server-config.ts";
import { ConfigError } from "../errors.ts";
import { supportsArchitecture } from "../executor/cpu/model-config.ts";
import { handlerOptionsFromConfig } from "../handler/from-model-config.ts";
import { createHandlerModel } from "../handler/handler-model.ts";
import { resolveModel } from "../model/resolve-model.ts";
import type { Logger } from "../server/log.ts";
import type { Backend, LoadedModel, ModelLoader, ModelSpec, ServingOptions } from "./types.ts";

export type ExecutorKind = "cpu" | "gpu";

/** Builds the paged engine for a model directory (src/engine + an executor); injected by `lmi serve`. */
export type EngineBuilder = (args: {
  modelDir: string;
  config: ModelConfig;
  executor: ExecutorKind;
  logger: Logger;
}) => Promise<{ backend: Extract<Backend, { kind: "engine" }>; close(): Promise<void> }>;

export interface ModelLoaderOptions {
  server: ServerConfig;
  env?: NodeJS.ProcessEnv;
  logger: Logger;
  executor: ExecutorKind;
  buildEngine: EngineBuilder;
}

const ENGINE_VALUES = new Set(["auto", "lmi-dist", "vllm", "deepspeed", "scheduler"]);

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

export type PathChoice = { path: "engine" | "handler"; reason: string };

/** The decision of spec §1.8 / architecture.md, as one pure function of the config and the dir. */
export function choosePath(config: ModelConfig, modelDir: string, executor: ExecutorKind): PathChoice {
  const rb = config.rollingBatch as string;
  if (existsSync(join(modelDir, "model.py")))
    return { path: "handler", reason: "the model directory has a model.py" };
  const ep = (config.entryPoint as string | undefined) ?? "";
  if (ep !== "" && !ep.startsWith("djl_python."))
    return { path: "handler", reason: `option.entryPoint=${ep}` };
  if (rb === "disable")
    return { path: "handler", reason: "option.rolling_batch=disable (static/dynamic batching)" };
  if (rb === "trtllm" || rb === "neuron") {
    throw new ConfigError([
      `option.rolling_batch=${rb} needs the ${rb === "trtllm" ? "TensorRT-LLM" : "AWS Neuron"} runtime, which this server does not have; use auto, vllm, lmi-dist or disable`,
    ]);
  }
  if (!ENGINE_VALUES.has(rb)) return { path: "handler", reason: `option.rolling_batch=${rb}` };
  if (executor === "gpu") return { path: "engine", reason: `option.rolling_batch=${rb} on the GPU executor` };
  let configJson: unknown = null;
  try {
    configJson = JSON.parse(readFileSync(join(modelDir, "config.json"), "utf8"));
  } catch {
    configJson = null;
  }
  if (configJson !== null && supportsArchitecture(configJson)) {
    return { path: "engine", reason: `option.rolling_batch=${rb}: paged engine on the CPU executor` };
  }
  if (rb === "auto")
    return {
      path: "handler",
      reason: "rolling_batch=auto and the CPU executor does not support this architecture",
    };
  throw new ConfigError([
    `option.rolling_batch=${rb}: the CPU executor does not support the architecture in ${join(modelDir, "config.json")}; use option.rolling_batch=disable for the Python handler`,
  ]);
}

export function servingOptionsOf(config: ModelConfig, rollingBatch: string): ServingOptions {
  const streaming = config.enableStreaming as boolean | "huggingface";
  return {
    outputFormatter: (config.outputFormatter as string | undefined) ?? null,
    tgiCompat: Boolean(config.tgiCompat),
    jobQueueSize: config.jobQueueSize as number,
    batchSize: config.batchSize as number,
    maxBatchDelayMillis: config.maxBatchDelay as number,
    maxIdleSeconds: config.maxIdleTime as number,
    minWorkers: (config.deviceWorkers.cpu?.minWorkers ?? config.minWorkers) as number,
    maxWorkers: (config.deviceWorkers.cpu?.maxWorkers ?? config.maxWorkers) as number,
    enableStreaming: streaming === "huggingface" ? "huggingface" : streaming ? "true" : "false",
    rollingBatch,
    retryThreshold: config.retryThreshold as number,
  };
}

export function createModelLoader(opts: ModelLoaderOptions): ModelLoader {
  const env = opts.env ?? process.env;
  const log = opts.logger;
  return async (spec: ModelSpec): Promise<LoadedModel> => {
    // 1. Where is the model? A local dir is used in place; anything else is a model_id to resolve.
    let configDir = spec.modelDir;
    const extra: Record<string, string> = { ...(spec.extraProperties ?? {}) };
    if (!configDir) {
      if (isDir(spec.url)) configDir = spec.url;
      else if (!extra["option.model_id"]) extra["option.model_id"] = spec.url;
    }
    if (spec.engine) extra.engine = spec.engine;
    // Registration parameters (POST /models?batch_size=...) beat serving.properties, as in DJL.
    const o = spec.overrides;
    const put = (key: string, v: number | undefined) => {
      if (v !== undefined) extra[key] = String(v);
    };
    put("batch_size", o.batchSize);
    put("max_batch_delay", o.maxBatchDelayMillis);
    put("job_queue_size", o.jobQueueSize);
    put("max_idle_time", o.maxIdleSeconds);
    put("minWorkers", o.minWorkers);
    put("maxWorkers", o.maxWorkers);
    const { config, warnings } = loadModelConfig({
      modelDir: configDir,
      env,
      extraProperties: extra,
      extraSource: spec.origin ?? "registration",
      server: opts.server,
    });
    for (const w of warnings) log.warn(`model ${spec.name}: ${w}`);
    // 2. Download when the weights live elsewhere (option.model_id pointing at a hub id or s3://).
    let modelDir = configDir;
    const modelId = config.modelId as string | undefined;
    if (modelId && (!configDir || !existsSync(join(configDir, "config.json")))) {
      log.info(`model ${spec.name}: resolving ${modelId}`);
      const resolved = await resolveModel({
        modelId,
        revision: config.revision as string | undefined,
        env,
        log: (m) => log.info(`model ${spec.name}: ${m}`),
        cwd: configDir,
      });
      modelDir = resolved.localDir;
    }
    if (!modelDir) throw new ConfigError([`model ${spec.name}: no model directory and no option.model_id`]);
    // 3. Engine or handler.
    const choice = choosePath(config, modelDir, opts.executor);
    const rb = config.rollingBatch as string;
    log.info(
      `model ${spec.name}: ${choice.path === "engine" ? "paged engine" : "Python handler"} (${choice.reason})`,
      {
        modelDir,
      },
    );
    const options = servingOptionsOf(config, choice.path === "engine" ? rb : "disable");
    if (choice.path === "engine") {
      const built = await opts.buildEngine({ modelDir, config, executor: opts.executor, logger: log });
      return { backend: built.backend, options, close: built.close };
    }
    // The handler gets the model's local directory as model_id, so it never downloads a second time.
    const handlerOptions = handlerOptionsFromConfig(config, options, {
      log: (level, line) => log.log(level === "error" ? "error" : level === "warn" ? "warn" : "info", line),
    });
    if (modelDir !== configDir)
      handlerOptions.properties = { ...handlerOptions.properties, model_id: modelDir };
    const handler = createHandlerModel({ modelName: spec.name, modelDir, options: handlerOptions });
    await handler.start();
    return { backend: { kind: "handler", handler }, options, close: () => handler.shutdown() };
  };
}
