// What every route module receives: the registry, the logger, the metrics and the HTTP options.
// Also the route helper that gives every known path DJL's 405 for the methods it does not serve.

import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { ModelRegistry } from "../registry/registry.ts";
import { MethodNotAllowedError } from "./http-errors.ts";
import type { Logger } from "./log.ts";
import type { ServerMetrics } from "./metrics.ts";

export interface HttpOptions {
  /** max_request_size in bytes (413 above it). */
  maxRequestSize: number;
  /** request_id_header_key: read from requests, echoed on every response. */
  requestIdHeader: string;
  /** allow_multi_status: /ping answers 207 while a model is PENDING. */
  allowMultiStatus: boolean;
  /** SERVING_PROMETHEUS: GET /server/metrics is served only when on. */
  prometheus: boolean;
  /** chunked_read_timeout in ms: longest wait for the engine's next output (0 = none). */
  chunkedReadTimeoutMs: number;
  /** timeout_http_code: the status of a timeout found before any byte was sent (DJL default 400). */
  timeoutHttpCode: number;
  /** Whether this listener serves the inference API, the management API, or both. */
  apis: { inference: boolean; management: boolean };
}

export const DEFAULT_HTTP_OPTIONS: Readonly<HttpOptions> = Object.freeze({
  maxRequestSize: 64 * 1024 * 1024,
  requestIdHeader: "x-request-id",
  allowMultiStatus: false,
  prometheus: false,
  chunkedReadTimeoutMs: 120_000,
  timeoutHttpCode: 400,
  apis: { inference: true, management: true },
});

export interface ServerContext {
  registry: ModelRegistry;
  logger: Logger;
  metrics: ServerMetrics;
  http: HttpOptions;
}

export type Handler = (req: FastifyRequest, reply: FastifyReply) => Promise<unknown> | unknown;
type Method = "GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS";
const ALL_METHODS: Method[] = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

/** Registers the given methods on a path; every other method on that path answers 405. */
export function defineRoute(
  app: FastifyInstance,
  url: string,
  handlers: Partial<Record<Method, Handler>>,
): void {
  for (const method of ALL_METHODS) {
    const handler = handlers[method];
    app.route({
      method,
      url,
      handler:
        handler ??
        (async () => {
          throw new MethodNotAllowedError();
        }),
    });
  }
}
