// Builds an in-process app (fastify inject) around a registry whose loader serves scripted models.
import { ModelRegistry } from "../../src/registry/registry.ts";
import type { LoadedModel, ModelSpec } from "../../src/registry/types.ts";
import { createApp } from "../../src/server/app.ts";
import { DEFAULT_HTTP_OPTIONS, type HttpOptions, type ServerContext } from "../../src/server/context.ts";
import { Logger } from "../../src/server/log.ts";
import { ServerMetrics } from "../../src/server/metrics.ts";

export function harness(loader: (spec: ModelSpec) => Promise<LoadedModel>, http: Partial<HttpOptions> = {}) {
  const lines: string[] = [];
  const logger = new Logger({ level: "info", sink: { write: (l) => lines.push(l) } });
  const metrics = new ServerMetrics({ version: "test", modelRegistry: () => registry });
  const registry: ModelRegistry = new ModelRegistry({
    loader,
    logger,
    onLoaded: (entry, ms) => metrics.djlLoadModel.set({ Model: entry.key }, Math.round(ms * 1000)),
  });
  const ctx: ServerContext = { registry, logger, metrics, http: { ...DEFAULT_HTTP_OPTIONS, ...http } };
  const app = createApp(ctx);
  return { app, ctx, registry, logLines: lines };
}
