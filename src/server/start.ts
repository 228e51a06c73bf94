// Starts the HTTP listeners for a registry: one listener serving both APIs when inference_address
// equals management_address (the default, http://127.0.0.1:8080), two listeners otherwise (spec §2.1).
// `port` overrides the port of a single listener (`lmi serve --port`; 0 picks a free one).
// Invariant: close() stops accepting, drains in-flight requests (up to a timeout), then shuts every
// model down and ends what is left.

import type { FastifyInstance } from "fastify";
import { ConfigError } from "../errors.ts";
import type { ModelRegistry } from "../registry/registry.ts";
import { createApp } from "./app.ts";
import type { HttpOptions } from "./context.ts";
import type { Logger } from "./log.ts";
import type { ServerMetrics } from "./metrics.ts";

export interface ListenAddress {
  host: string;
  port: number;
  path?: string;
}

export function parseAddress(address: string, key: string): ListenAddress {
  if (address.startsWith("unix:")) return { host: "", port: 0, path: address.slice("unix:".length) };
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    throw new ConfigError([`${key}: "${address}" is not an address like http://127.0.0.1:8080`]);
  }
  if (url.protocol === "https:") {
    throw new ConfigError([
      `${key}: https:// listeners are not supported by this server yet; use http:// behind a TLS proxy`,
    ]);
  }
  if (url.protocol !== "http:") throw new ConfigError([`${key}: unsupported scheme ${url.protocol}`]);
  const host = url.hostname.replace(/^\[|\]$/g, "");
  return { host, port: url.port === "" ? 80 : Number(url.port) };
}

export interface StartOptions {
  registry: ModelRegistry;
  logger: Logger;
  metrics: ServerMetrics;
  http: Omit<HttpOptions, "apis">;
  inferenceAddress: string;
  managementAddress: string;
  /** Overrides the port (and forces a single listener for both APIs). */
  port?: number;
  host?: string;
}

/** How long close() lets in-flight requests finish before it stops the engines under them. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 30_000;

export interface RunningServer {
  apps: FastifyInstance[];
  /** The URLs actually bound (port 0 resolved). */
  urls: string[];
  /** Stops accepting, lets in-flight requests finish for up to drainTimeoutMs, then stops every model. */
  close(drainTimeoutMs?: number): Promise<void>;
}

async function listen(app: FastifyInstance, addr: ListenAddress): Promise<string> {
  if (addr.path) {
    await app.listen({ path: addr.path });
    return `unix:${addr.path}`;
  }
  await app.listen({ host: addr.host, port: addr.port });
  const bound = app.server.address();
  const port = typeof bound === "object" && bound ? bound.port : addr.port;
  const host = addr.host.includes(":") ? `[${addr.host}]` : addr.host;
  return `http://${host}:${port}`;
}

export async function startServer(opts: StartOptions): Promise<RunningServer> {
  const ctxBase = { registry: opts.registry, logger: opts.logger, metrics: opts.metrics };
  const inf = parseAddress(opts.inferenceAddress, "inference_address");
  const mgmt = parseAddress(opts.managementAddress, "management_address");
  const override = (a: ListenAddress): ListenAddress => ({
    ...a,
    ...(opts.host !== undefined ? { host: opts.host } : {}),
    ...(opts.port !== undefined ? { port: opts.port, path: undefined } : {}),
  });
  const same =
    opts.port !== undefined || (inf.host === mgmt.host && inf.port === mgmt.port && inf.path === mgmt.path);
  const plan: Array<{ addr: ListenAddress; apis: HttpOptions["apis"]; label: string }> = same
    ? [{ addr: override(inf), apis: { inference: true, management: true }, label: "BOTH API" }]
    : [
        { addr: inf, apis: { inference: true, management: false }, label: "Inference API" },
        { addr: mgmt, apis: { inference: false, management: true }, label: "Management API" },
      ];
  const apps: FastifyInstance[] = [];
  const urls: string[] = [];
  try {
    for (const p of plan) {
      const app = createApp({ ...ctxBase, http: { ...opts.http, apis: p.apis } });
      apps.push(app);
      const url = await listen(app, p.addr);
      urls.push(url);
      opts.logger.notice(`${p.label} bind to: ${url}`);
    }
  } catch (err) {
    await Promise.allSettled(apps.map((a) => a.close()));
    throw err;
  }
  return {
    apps,
    urls,
    async close(drainTimeoutMs = DEFAULT_DRAIN_TIMEOUT_MS) {
      // Stop accepting (listeners close, idle keep-alive connections end); requests in flight go on.
      const closed = Promise.allSettled(apps.map((a) => a.close()));
      // A keep-alive connection whose response ends during the drain goes idle and would hold the
      // close open until the client drops it; close those as they appear.
      const reaper = setInterval(() => {
        for (const app of apps) app.server.closeIdleConnections();
      }, 100);
      let timer: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([
        closed.then(() => false),
        new Promise<boolean>((r) => {
          timer = setTimeout(() => r(true), drainTimeoutMs);
        }),
      ]);
      clearTimeout(timer);
      clearInterval(reaper);
      if (timedOut)
        opts.logger.warn(`shutdown: requests still running after ${drainTimeoutMs} ms; stopping them`);
      // Engines stop after the drain: a stream still running ends with its error line, not a cut.
      await opts.registry.closeAll();
      for (const app of apps) app.server.closeAllConnections();
      await closed;
    },
  };
}
