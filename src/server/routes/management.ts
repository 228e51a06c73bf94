// The management API (spec §2.5): list with pagination, register (sync 200 / async 202, 409 on a
// duplicate, 400 without url), describe, scale workers, unregister, POST /server/logging and
// GET /server/metrics (Prometheus text, only when SERVING_PROMETHEUS is on).
// Invariant: every body is DJL's pretty JSON; every bad parameter is a 400 naming the parameter.

import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { ServerError, ValidationError } from "../../errors.ts";
import type { ModelEntry } from "../../registry/registry.ts";
import type { ModelSpec } from "../../registry/types.ts";
import { sendJson } from "../app.ts";
import { defineRoute, type ServerContext } from "../context.ts";
import { isLogLevel } from "../log.ts";

type Params = Record<string, unknown>;

/** Query parameters, overlaid by a JSON body's snake_case fields when one is sent. */
function params(req: FastifyRequest): Params {
  const out: Params = { ...(req.query as Params) };
  const body = req.body as Buffer | undefined;
  if (body && body.length > 0) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString("utf8"));
    } catch {
      throw new ValidationError("The request body must be JSON.", "body");
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      throw new ValidationError("The request body must be a JSON object.", "body");
    }
    Object.assign(out, parsed);
  }
  return out;
}

function intParam(p: Params, name: string, min = 0): number | undefined {
  const v = p[name];
  if (v === undefined || v === "") return undefined;
  const n = typeof v === "number" ? v : /^-?\d+$/.test(String(v)) ? Number(v) : Number.NaN;
  if (!Number.isInteger(n) || n < min)
    throw new ValidationError(`Parameter ${name} must be an integer >= ${min}.`, name);
  return n;
}

function str(p: Params, name: string): string | undefined {
  const v = p[name];
  return v === undefined || v === null || v === "" ? undefined : String(v);
}

function boolParam(p: Params, name: string, dflt: boolean): boolean {
  const v = str(p, name);
  if (v === undefined) return dflt;
  if (/^(true|false)$/i.test(v)) return v.toLowerCase() === "true";
  throw new ValidationError(`Parameter ${name} must be true or false.`, name);
}

/** DJL infers the name from the URL: its last path segment, non-word characters as `_`. */
export function modelNameFromUrl(url: string): string {
  const trimmed = url.replace(/\/+$/, "");
  const last = trimmed.slice(trimmed.lastIndexOf("/") + 1).replace(/\.(zip|tar\.gz|tgz)$/, "");
  return last.replace(/\W/g, "_") || "model";
}

export function describe(e: ModelEntry): Record<string, unknown> {
  const model: Record<string, unknown> = {
    modelName: e.name,
    ...(e.spec.version ? { version: e.spec.version } : {}),
    modelUrl: e.spec.url,
    batchSize: e.options.batchSize,
    maxBatchDelayMillis: e.options.maxBatchDelayMillis,
    maxIdleSeconds: e.options.maxIdleSeconds,
    queueSize: e.options.jobQueueSize,
    requestInQueue: e.inFlight,
    status: e.effectiveStatus(),
    loadedAtStartup: e.loadedAtStartup,
    backend: e.backend?.kind ?? null,
    rollingBatch: e.options.rollingBatch,
    failedCount: e.failedCount(),
    ...(e.error ? { error: e.error } : {}),
    workerGroups: [
      {
        device: { deviceType: "cpu", deviceId: -1 },
        minWorkers: e.options.minWorkers,
        maxWorkers: e.options.maxWorkers,
        workers: e.workers(),
      },
    ],
  };
  return { workflowName: e.name, ...(e.spec.version ? { version: e.spec.version } : {}), models: [model] };
}

export function registerManagementRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const list = (req: FastifyRequest, reply: FastifyReply) => {
    const p = params(req);
    const limit = intParam(p, "limit", 1) ?? 100;
    const offset = intParam(p, "next_page_token", 0) ?? 0;
    const all = ctx.registry.list();
    const page = all.slice(offset, offset + limit);
    const body: Record<string, unknown> = {
      models: page.map((e) => ({
        modelName: e.name,
        ...(e.spec.version ? { version: e.spec.version } : {}),
        modelUrl: e.spec.url,
        status: e.effectiveStatus(),
      })),
    };
    if (offset + limit < all.length) body.nextPageToken = String(offset + limit);
    return sendJson(reply, 200, body);
  };

  const register = async (req: FastifyRequest, reply: FastifyReply) => {
    const p = params(req);
    const url = str(p, "url");
    if (!url) throw new ValidationError("Parameter url is required.", "url");
    const spec: ModelSpec = {
      name: str(p, "model_name") ?? modelNameFromUrl(url),
      version: str(p, "model_version"),
      url,
      engine: str(p, "engine"),
      overrides: {},
    };
    const o = spec.overrides;
    const set = <K extends keyof ModelSpec["overrides"]>(k: K, v: number | undefined) => {
      if (v !== undefined) o[k] = v;
    };
    set("jobQueueSize", intParam(p, "job_queue_size", 1));
    set("batchSize", intParam(p, "batch_size", 1));
    set("maxBatchDelayMillis", intParam(p, "max_batch_delay", 0));
    set("maxIdleSeconds", intParam(p, "max_idle_time", 0));
    set("minWorkers", intParam(p, "min_worker", 0));
    set("maxWorkers", intParam(p, "max_worker", 0));
    const sync = boolParam(p, "synchronous", true);
    const { entry, ready } = ctx.registry.register(spec);
    if (!sync) return sendJson(reply, 202, { status: `Model "${entry.key}" registration scheduled.` });
    try {
      await ready;
    } catch (err) {
      // A failed synchronous registration leaves nothing behind, as in DJL.
      await ctx.registry.unregister(entry.name, entry.spec.version).catch(() => {});
      ctx.metrics.recordModelLoadingError();
      throw err instanceof ServerError
        ? err
        : new ServerError((err as Error).message, 500, "ModelLoadingException");
    }
    return sendJson(reply, 200, { status: `Model "${entry.key}" registered.` });
  };

  const target = (req: FastifyRequest) => {
    const { name, version } = req.params as { name: string; version?: string };
    return ctx.registry.get(name, version);
  };
  const describeRoute = (req: FastifyRequest, reply: FastifyReply) =>
    sendJson(reply, 200, [describe(target(req))]);
  const scale = async (req: FastifyRequest, reply: FastifyReply) => {
    const e = target(req);
    const p = params(req);
    const min = intParam(p, "min_worker", 0) ?? e.options.minWorkers;
    const max = intParam(p, "max_worker", 0) ?? Math.max(min, e.options.maxWorkers);
    if (max < min) throw new ValidationError("max_worker must be >= min_worker.", "max_worker");
    await ctx.registry.scale(e, min, max);
    return sendJson(reply, 200, {
      status: `Workflow "${e.key}" worker scaled. New Worker configuration min workers:${min} max workers:${max}`,
    });
  };
  const unregister = async (req: FastifyRequest, reply: FastifyReply) => {
    const { name, version } = req.params as { name: string; version?: string };
    const e = await ctx.registry.unregister(name, version);
    return sendJson(reply, 200, { status: `Model or workflow "${e.key}" unregistered` });
  };

  defineRoute(app, "/models", { GET: list, POST: register });
  const one = { GET: describeRoute, PUT: scale, DELETE: unregister };
  defineRoute(app, "/models/:name", one);
  defineRoute(app, "/models/:name/:version", one);

  defineRoute(app, "/server/logging", {
    POST: (req, reply) => {
      const level = str(params(req), "level");
      if (level !== undefined) {
        const l = level.toLowerCase();
        if (!isLogLevel(l)) throw new ValidationError(`Invalid log level '${level}'.`, "level");
        ctx.logger.level = l;
      }
      return sendJson(reply, 200, { status: "OK" });
    },
  });
  defineRoute(app, "/server/metrics", {
    GET: async (req, reply) => {
      if (!ctx.http.prometheus) {
        throw new ValidationError(
          "Prometheus is not enabled: set SERVING_PROMETHEUS=true.",
          "SERVING_PROMETHEUS",
        );
      }
      const q = req.query as Record<string, string | string[] | undefined>;
      const raw = q["name[]"] ?? q.name ?? [];
      const names = Array.isArray(raw) ? raw : [raw];
      const text = await ctx.metrics.render(names);
      return reply.code(200).type(ctx.metrics.contentType).send(text);
    },
  });
}
