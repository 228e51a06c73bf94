// The HTTP app factory (fastify, never listens here): body parsing as raw bytes, the headers of
// spec §2.2 on every response, request ids, the access log, the one error mapping, 404/405, and the
// route modules for the APIs this listener serves. Tests call it with `app.inject()`.
// Invariant: every response, plain or streamed, carries the request-id header and the no-cache headers.

import { randomUUID } from "node:crypto";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import type { HttpOptions, ServerContext } from "./context.ts";
import {
  djlErrorBody,
  openAiErrorBody,
  PayloadTooLargeError,
  prettyJson,
  ResourceNotFoundError,
} from "./http-errors.ts";
import { registerInferenceRoutes } from "./routes/inference.ts";
import { registerManagementRoutes } from "./routes/management.ts";
import { registerOpenAiRoutes } from "./routes/openai.ts";
import { registerPingRoutes } from "./routes/ping.ts";

export const NO_CACHE_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  pragma: "no-cache",
  "cache-control": "no-cache; no-store, must-revalidate, private",
  expires: "Thu, 01 Jan 1970 00:00:00 UTC",
});

/** Writes server-generated JSON the DJL way (pretty, trailing newline, application/json). */
export function sendJson(reply: FastifyReply, status: number, value: unknown): FastifyReply {
  if (status >= 400) reply.header("connection", "close");
  // A Buffer keeps the content type exactly application/json (fastify adds a charset to strings).
  return reply
    .code(status)
    .type("application/json")
    .send(Buffer.from(prettyJson(value)));
}

export function createApp(ctx: ServerContext): FastifyInstance {
  const http: HttpOptions = ctx.http;
  const app = Fastify({
    logger: false,
    bodyLimit: http.maxRequestSize,
    requestIdHeader: http.requestIdHeader.toLowerCase(),
    genReqId: () => randomUUID(),
    // Generations can be long; the per-chunk timeout is the engine's business, not the socket's.
    requestTimeout: 0,
    connectionTimeout: 0,
    keepAliveTimeout: 65_000,
    routerOptions: { ignoreTrailingSlash: true },
  });

  // Bodies stay raw bytes: each route decodes by content type (spec §3.1), handlers get them as-is.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "buffer" }, (_req, body, done) => done(null, body));

  app.addHook("onRequest", async (req, reply) => {
    reply.header(http.requestIdHeader, req.id);
    for (const [k, v] of Object.entries(NO_CACHE_HEADERS)) reply.header(k, v);
    accessLog(ctx, req, reply);
    const declared = Number(req.headers["content-length"]);
    if (Number.isFinite(declared) && declared > http.maxRequestSize) {
      throw new PayloadTooLargeError(http.maxRequestSize);
    }
  });

  app.setErrorHandler((err, req, reply) => {
    const isOpenAi = req.url.startsWith("/v1/");
    const { status, body } = isOpenAi ? openAiErrorBody(err) : djlErrorBody(err);
    if (status >= 500)
      ctx.logger.error(`${req.method} ${req.url} failed: ${(err as Error).message}`, { requestId: req.id });
    return sendJson(reply, status, body);
  });

  app.setNotFoundHandler((_req, reply) => {
    const { status, body } = djlErrorBody(new ResourceNotFoundError());
    return sendJson(reply, status, body);
  });

  // OPTIONS / answers an empty API description, as DJL does.
  app.options("/", (_req, reply) => sendJson(reply, 200, {}));

  if (http.apis.inference) {
    registerPingRoutes(app, ctx);
    registerInferenceRoutes(app, ctx);
    registerOpenAiRoutes(app, ctx);
  }
  if (http.apis.management) registerManagementRoutes(app, ctx);
  return app;
}

/** One access-log line per request when its response ends (plain or streamed), plus the status metric. */
function accessLog(ctx: ServerContext, req: FastifyRequest, reply: FastifyReply): void {
  const t0 = performance.now();
  const res = reply.raw;
  let done = false;
  const finish = () => {
    if (done) return;
    done = true;
    const ms = Math.round(performance.now() - t0);
    const closedEarly = !res.writableFinished;
    ctx.metrics.recordResponse(res.statusCode);
    ctx.logger.info(
      `${req.ip} "${req.method} ${req.url}" ${res.statusCode} ${ms}ms${closedEarly ? " (connection closed early)" : ""}`,
      { requestId: req.id },
    );
  };
  res.once("finish", finish);
  res.once("close", finish);
}
