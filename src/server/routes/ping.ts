// GET /ping (spec §6.1): a per-model status map and the HTTP code that summarises it.
// Healthy = loaded with its workers up; Unhealthy = loaded but no live worker (scaled to 0, restarting);
// PENDING = loading; FAILED = load failed or crashes exceeded retry_threshold.
// Codes: 500 when any model FAILED; 503 when any is Unhealthy; 207 for PENDING with allow_multi_status.

import type { FastifyInstance } from "fastify";
import type { ModelEntry } from "../../registry/registry.ts";
import { sendJson } from "../app.ts";
import { defineRoute, type ServerContext } from "../context.ts";

export type PingStatus = "Healthy" | "Unhealthy" | "FAILED" | "PENDING";

export function pingStatus(e: ModelEntry): PingStatus {
  const s = e.effectiveStatus();
  if (s === "FAILED") return "FAILED";
  if (s === "PENDING") return "PENDING";
  if (!e.backend || e.options.maxWorkers === 0) return "Unhealthy";
  return "Healthy";
}

export function registerPingRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const ping = async (_req: unknown, reply: import("fastify").FastifyReply) => {
    const body: Record<string, { status: PingStatus }> = {};
    let code = 200;
    let anyPending = false;
    for (const e of ctx.registry.list()) {
      const status = pingStatus(e);
      body[e.key] = { status };
      if (status === "FAILED") code = 500;
      else if (status === "Unhealthy" && code !== 500) code = 503;
      else if (status === "PENDING") anyPending = true;
    }
    if (code === 200 && anyPending && ctx.http.allowMultiStatus) code = 207;
    return sendJson(reply, code, body);
  };
  defineRoute(app, "/ping", { GET: ping, POST: ping, OPTIONS: (_r, reply) => sendJson(reply, 200, {}) });
}
