// The body of `lmi serve`: config -> startup models -> registry (engine or handler per model) ->
// listeners, plus signal handling. Kept apart from src/commands/serve.ts so the CLI stays light.
// Invariants: a bad configuration exits with status 2 listing every problem; with wait_model_loading
// (default) the listeners open after the startup models finish loading; a model that fails to load
// stays registered as FAILED (/ping answers 500) unless SERVING_FAIL_FAST exits the process.

import { existsSync, statSync } from "node:fs";
import { basename, resolve } from "node:path";
import { loadServerConfig, type ServerConfig } from "../config/server-config.ts";
import { resolveStartupModels } from "../config/startup-models.ts";
import { ConfigError } from "../errors.ts";
import { buildEngine } from "../registry/engine-backend.ts";
import { createModelLoader, type ExecutorKind } from "../registry/model-loader.ts";
import { ModelRegistry } from "../registry/registry.ts";
import type { ModelSpec } from "../registry/types.ts";
import { startGcLog } from "./gc-log.ts";
import { isLogLevel, Logger, type LogLevel } from "./log.ts";
import { startLoopLog } from "./loop-log.ts";
import { ServerMetrics } from "./metrics.ts";
import { type RunningServer, startServer } from "./start.ts";

export interface RunServeOptions {
  configFile?: string;
  models?: string[];
  modelStore?: string;
  port?: number;
  host?: string;
  executor?: ExecutorKind;
  logFormat?: "text" | "json";
  logLevel?: string;
  defaultModelDir: string;
  env?: NodeJS.ProcessEnv;
}

const VERSION = "0.1.0";

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** Which models to load, and why (spec §1.1, §1.3; issue 4's default model). */
export function startupSpecs(
  modelArg: string | undefined,
  server: ServerConfig,
  env: NodeJS.ProcessEnv,
  defaultModelDir: string,
): ModelSpec[] {
  if (modelArg) {
    const local = resolve(modelArg);
    if (isDir(local)) {
      return [
        {
          name: basename(local).replace(/\W/g, "_"),
          url: local,
          modelDir: local,
          origin: "command line",
          overrides: {},
        },
      ];
    }
    return [{ name: modelArg.replace(/\W/g, "_"), url: modelArg, origin: "command line", overrides: {} }];
  }
  const found = resolveStartupModels(server, env);
  if (found.length > 0) {
    return found.map((m) => ({
      name: m.name,
      version: m.version,
      url: m.modelDir ?? m.modelUrl ?? m.name,
      modelDir: m.modelDir,
      engine: m.engine,
      extraProperties: m.extraProperties,
      origin: m.origin,
      overrides: {},
    }));
  }
  if (!existsSync(defaultModelDir)) {
    throw new ConfigError([
      `no model configured and the embedded default model is missing at ${defaultModelDir}`,
    ]);
  }
  return [
    {
      name: basename(defaultModelDir).replace(/\W/g, "_"),
      url: defaultModelDir,
      modelDir: defaultModelDir,
      origin: "embedded default model",
      overrides: {},
    },
  ];
}

export async function runServe(
  modelArg: string | undefined,
  opts: RunServeOptions,
): Promise<RunningServer | undefined> {
  const env = opts.env ?? process.env;
  const levelText = (opts.logLevel ?? env.LMI_LOG_LEVEL ?? "info").toLowerCase();
  const logger = new Logger({
    level: isLogLevel(levelText) ? (levelText as LogLevel) : "info",
    json: (opts.logFormat ?? env.LMI_LOG_FORMAT) === "json",
    sink: { write: (l) => process.stdout.write(l) },
  });
  if (env.LMI_GC_LOG) startGcLog(env.LMI_GC_LOG); // diagnostic: the process's GC pauses (docs/gpu-executor.md)
  if (env.LMI_LOOP_LOG) startLoopLog(env.LMI_LOOP_LOG); // diagnostic: how busy the event loop is (same doc)
  let server: ServerConfig;
  let specs: ModelSpec[];
  try {
    const overrides: Record<string, string> = {};
    if (opts.models?.length) overrides.load_models = opts.models.join(",");
    if (opts.modelStore) overrides.model_store = opts.modelStore;
    server = loadServerConfig({ configFile: opts.configFile, env, overrides });
    for (const w of server.warnings) logger.warn(w);
    specs = startupSpecs(modelArg, server, env, opts.defaultModelDir);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`Invalid configuration:\n${err.problems.map((p) => `  - ${p}`).join("\n")}\n`);
      process.exitCode = 2;
      return undefined;
    }
    throw err;
  }
  const executor = opts.executor ?? "cpu";
  const metrics = new ServerMetrics({ version: VERSION, modelRegistry: () => registry });
  const registry: ModelRegistry = new ModelRegistry({
    loader: createModelLoader({ server, env, logger, executor, buildEngine }),
    logger,
    onLoaded: (entry, ms) => metrics.djlLoadModel.set({ Model: entry.key }, Math.round(ms * 1000)),
  });
  const t0 = performance.now();
  const loads = specs.map((spec) => {
    logger.info(`Loading model ${spec.name} from ${spec.url} (${spec.origin})`);
    return registry.register(spec, { loadedAtStartup: true }).ready.catch((err) => {
      metrics.recordModelLoadingError();
      if (server.failFast) {
        logger.error(`SERVING_FAIL_FAST: exiting after ${spec.name} failed to load`);
        process.exit(137);
      }
      return err;
    });
  });
  if (server.waitModelLoading) await Promise.all(loads);
  const running = await startServer({
    registry,
    logger,
    metrics,
    http: {
      maxRequestSize: server.maxRequestSize as number,
      requestIdHeader: (server.requestIdHeaderKey as string) ?? "x-request-id",
      allowMultiStatus: Boolean(server.allowMultiStatus),
      prometheus: Boolean(server.prometheus),
      chunkedReadTimeoutMs: (server.chunkedReadTimeout as number) * 1000,
      timeoutHttpCode: server.timeoutHttpCode as number,
    },
    inferenceAddress: server.inferenceAddress as string,
    managementAddress: server.managementAddress as string,
    port: opts.port,
    host: opts.host,
  });
  const startupMs = performance.now() - t0;
  metrics.djlStartupLatency.set(Math.round(startupMs * 1000));
  logger.info(`Model server started in ${Math.round(startupMs)} ms.`);
  let closing = false;
  const shutdown = (signal: string) => {
    if (closing) return;
    closing = true;
    logger.info(`${signal}: shutting down`);
    // LMI_SHUTDOWN_DRAIN_S: how long in-flight requests may finish (default 30 s).
    const drainS = Number(env.LMI_SHUTDOWN_DRAIN_S);
    running.close(Number.isFinite(drainS) && drainS >= 0 ? drainS * 1000 : undefined).then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once("SIGINT", () => shutdown("SIGINT"));
  process.once("SIGTERM", () => shutdown("SIGTERM"));
  return running;
}
