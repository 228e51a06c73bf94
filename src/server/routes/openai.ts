// OpenAI-compatible routes: POST /v1/chat/completions and POST /v1/completions (spec §3.7), routed
// like /invocations (model from ?model_name / header, else the single model; the body's `model`
// names a registered model when it matches one, and is otherwise ignored as LMI does).
// Errors use OpenAI's {"error":{message,type,param,code}} body (see docs/api.md).

import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { ModelNotReadyError, ValidationError } from "../../errors.ts";
import type { ModelEntry } from "../../registry/registry.ts";
import { defineRoute, type ServerContext } from "../context.ts";
import { invokeChat, invokeCompletion } from "../engine-invoke.ts";
import { invokeHandler } from "../handler-invoke.ts";
import { decodeBody, mediaType } from "../lmi/decode-body.ts";
import { resolveInvocationModel } from "./inference.ts";

function pickModel(ctx: ServerContext, req: FastifyRequest, body: unknown): ModelEntry {
  const named = (body as { model?: unknown } | null)?.model;
  if (typeof named === "string" && ctx.registry.has(named)) return ctx.registry.get(named);
  return resolveInvocationModel(ctx, req);
}

function parseJson(req: FastifyRequest): unknown {
  const type = mediaType(req.headers["content-type"]);
  if (type !== "" && type !== "application/json") {
    throw new ValidationError(`Content-Type must be application/json, got '${type}'`, "content-type");
  }
  try {
    return decodeBody("application/json", req.body as Buffer | undefined);
  } catch (err) {
    throw new ValidationError((err as Error).message, "body");
  }
}

export function registerOpenAiRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const route = (kind: "chat" | "completion") => async (req: FastifyRequest, reply: FastifyReply) => {
    const body = parseJson(req);
    const entry = pickModel(ctx, req, body);
    const backend = entry.backend;
    if (!backend) {
      ctx.registry.acquire(entry)();
      throw new ModelNotReadyError(entry.key);
    }
    // A Python handler answers chat bodies itself, exactly as on /invocations (spec §2.3).
    if (backend.kind === "handler") return invokeHandler(ctx, req, reply, entry, backend);
    return kind === "chat"
      ? invokeChat(ctx, req, reply, entry, backend, body, "openai")
      : invokeCompletion(ctx, req, reply, entry, backend, body, "openai");
  };
  defineRoute(app, "/v1/chat/completions", { POST: route("chat") });
  defineRoute(app, "/v1/completions", { POST: route("completion") });
}
