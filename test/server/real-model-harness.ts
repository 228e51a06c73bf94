// An in-process app (fastify inject) whose registry loads models with the real loader: the paged
// engine + CPU executor for the tiny model, the Python handler for model.py directories.
import { loadServerConfig } from "../../src/config/server-config.ts";
import { buildEngine } from "../../src/registry/engine-backend.ts";
import { createModelLoader } from "../../src/registry/model-loader.ts";
import { ModelRegistry } from "../../src/registry/registry.ts";
import { createApp } from "../../src/server/app.ts";
import { DEFAULT_HTTP_OPTIONS, type HttpOptions, type ServerContext } from "../../src/server/context.ts";
import { Logger } from "../../src/server/log.ts";
import { ServerMetrics } from "../../src/server/metrics.ts";

export function realHarness(env: Record<string, string> = {}, http: Partial<HttpOptions> = {}) {
  const lines: string[] = [];
  const logger = new Logger({ level: "info", sink: { write: (l) => lines.push(l) } });
  const server = loadServerConfig({ env });
  const registry = new ModelRegistry({
    loader: createModelLoader({ server, env, logger, executor: "cpu", buildEngine }),
    logger,
  });
  const metrics = new ServerMetrics({ version: "test", modelRegistry: () => registry });
  const ctx: ServerContext = { registry, logger, metrics, http: { ...DEFAULT_HTTP_OPTIONS, ...http } };
  return { app: createApp(ctx), registry, ctx, logLines: lines };
}
