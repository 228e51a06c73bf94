// The LMI inference routes (spec §2.3): POST /invocations (model from ?model_name, the model_name
// header, or the single startup model), POST /predictions/{model}[/{version}] and
// POST /models/{model}/invoke. Each request goes to its model's backend: the paged engine (LMI and
// chat bodies, formatters) or the Python handler (bytes through unchanged). OPTIONS answers {}.

import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { ModelNotReadyError, ValidationError } from "../../errors.ts";
import type { ModelEntry } from "../../registry/registry.ts";
import { sendJson } from "../app.ts";
import { defineRoute, type ServerContext } from "../context.ts";
import { invokeEngineLmi } from "../engine-invoke.ts";
import { invokeHandler } from "../handler-invoke.ts";
import { decodeBody } from "../lmi/decode-body.ts";

function header(req: FastifyRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Chooses the model of an /invocations request (spec §2.3). */
export function resolveInvocationModel(ctx: ServerContext, req: FastifyRequest): ModelEntry {
  const query = req.query as Record<string, string | undefined>;
  const name = query.model_name ?? header(req, "model_name") ?? header(req, "x-model-name");
  const version = query.model_version ?? header(req, "model_version");
  if (name) return ctx.registry.get(name, version);
  const entry = ctx.registry.defaultEntry();
  if (!entry) throw new ValidationError("Parameter model_name is required.", "model_name");
  return entry;
}

export async function dispatch(
  ctx: ServerContext,
  req: FastifyRequest,
  reply: FastifyReply,
  entry: ModelEntry,
): Promise<unknown> {
  const backend = entry.backend;
  if (!backend) {
    // acquire() produces the precise 503 (loading, restarting, scaled to zero)
    ctx.registry.acquire(entry)();
    throw new ModelNotReadyError(entry.key);
  }
  if (backend.kind === "handler") return invokeHandler(ctx, req, reply, entry, backend);
  const body = decodeBody(req.headers["content-type"], req.body as Buffer | undefined);
  return invokeEngineLmi(ctx, req, reply, entry, backend, body);
}

export function registerInferenceRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const options = (_req: FastifyRequest, reply: FastifyReply) => sendJson(reply, 200, {});
  defineRoute(app, "/invocations", {
    POST: (req, reply) => dispatch(ctx, req, reply, resolveInvocationModel(ctx, req)),
    OPTIONS: options,
  });
  const byName = (req: FastifyRequest, reply: FastifyReply) => {
    const { model, version } = req.params as { model: string; version?: string };
    return dispatch(ctx, req, reply, ctx.registry.get(model, version));
  };
  defineRoute(app, "/predictions/:model", { POST: byName, OPTIONS: options });
  defineRoute(app, "/predictions/:model/:version", { POST: byName, OPTIONS: options });
  defineRoute(app, "/models/:model/invoke", { POST: byName, OPTIONS: options });
}
