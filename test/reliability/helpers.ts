// Shared pieces of the reliability suite: the profile (short in CI, full for `npm run reliability`),
// figures each test records for docs/reliability.md, a real in-process server on a loopback port over
// the tiny model, a raw HTTP client that tells a clean end of stream from a cut one, and polling.
// Invariant: nothing here listens anywhere but 127.0.0.1, and every wait is bounded.

import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import type { Engine } from "../../src/engine/engine.ts";
import { CpuExecutor } from "../../src/executor/cpu/cpu-executor.ts";
import type { SchedulerOutput } from "../../src/executor/types.ts";
import type { HttpOptions } from "../../src/server/context.ts";
import { testModelDir } from "../e2e/serve-process.ts";
import { realHarness } from "../server/real-model-harness.ts";

/** `full` runs more rounds (npm run reliability); the default is the short CI profile. */
export const FULL = process.env.RELIABILITY_PROFILE === "full";
export const rounds = (short: number, full: number): number => (FULL ? full : short);

/** Writes one test's figures where scripts/reliability/report.ts collects them (when asked to). */
export function recordFigures(name: string, data: Record<string, unknown>): void {
  const dir = process.env.RELIABILITY_OUT;
  if (!dir) return;
  mkdirSync(dir, { recursive: true });
  const body = { name, profile: FULL ? "full" : "short", at: new Date().toISOString(), ...data };
  writeFileSync(join(dir, `${name}.json`), `${JSON.stringify(body, null, 2)}\n`);
}

export const MODEL_DIR = testModelDir();

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

/** Heap after a full GC; `logLines` (the test harness's in-memory log, not the server's) is emptied. */
export function heapMiB(logLines?: string[]): number {
  if (logLines) logLines.length = 0;
  gc();
  return process.memoryUsage().heapUsed / 2 ** 20;
}

export interface LiveServer {
  url: string;
  h: ReturnType<typeof realHarness>;
  close(): Promise<void>;
}

/**
 * The real app and registry (paged engine + CPU executor on the tiny model) listening on a loopback
 * port, with the model registered as `tiny` using the given registration query (e.g. job_queue_size).
 */
export async function startLiveServer(
  opts: { env?: Record<string, string>; query?: string; http?: Partial<HttpOptions> } = {},
): Promise<LiveServer> {
  const h = realHarness(opts.env ?? {}, opts.http ?? {});
  const q = opts.query ? `&${opts.query}` : "";
  const res = await h.app.inject({
    method: "POST",
    url: `/models?url=${encodeURIComponent(MODEL_DIR)}&model_name=tiny${q}`,
  });
  assert.equal(res.statusCode, 200, res.body);
  await h.app.listen({ host: "127.0.0.1", port: 0 });
  const port = (h.app.server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    h,
    async close() {
      h.app.server.closeAllConnections();
      await h.app.close();
      await h.registry.closeAll();
    },
  };
}

/** The model's live engine (the registry rebuilds it after a death, so always ask again). */
export function engineOf(s: LiveServer): Engine {
  const b = s.h.registry.get("tiny").backend;
  assert.ok(b && b.kind === "engine", "tiny has no engine backend");
  return b.engine as Engine;
}

/**
 * The engine's executor as a CpuExecutor, whose worker_thread the crash tests terminate. The engine
 * keeps it private; reaching in is deliberate, and fails loudly if the server ever stops running the
 * CPU executor on its own thread (then there would be no thread to kill).
 */
export function cpuExecutorOf(engine: Engine): CpuExecutor {
  const ex = (engine as unknown as { executor: unknown }).executor;
  assert.ok(ex instanceof CpuExecutor, "the engine does not run a worker_thread CpuExecutor");
  return ex;
}

/** Records every plan the model's executor runs, with its start time, without changing what it does. */
export function tapPlans(s: LiveServer): Array<{ t: number; plan: SchedulerOutput }> {
  const ex = cpuExecutorOf(engineOf(s));
  const seen: Array<{ t: number; plan: SchedulerOutput }> = [];
  const original = ex.execute.bind(ex);
  ex.execute = (plan) => {
    seen.push({ t: performance.now(), plan });
    return original(plan);
  };
  return seen;
}

export interface StreamResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  /** True when the response ended with its terminator (chunked 0-length chunk or full length). */
  complete: boolean;
  /** Milliseconds from the request to the end (or cut) of the response. */
  ms: number;
}

export interface StreamHandle {
  /** Resolves when the first body bytes arrive (headers and at least one chunk). */
  firstChunk: Promise<void>;
  done: Promise<StreamResult>;
  /** Destroys the socket: a client that goes away. */
  destroy(): void;
}

/** A POST over a raw socket: sees exactly what arrives and whether the end was clean. */
export function post(
  url: string,
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
): StreamHandle {
  const t0 = performance.now();
  const payload = typeof body === "string" || Buffer.isBuffer(body) ? body : JSON.stringify(body);
  let onFirst: () => void = () => {};
  const firstChunk = new Promise<void>((r) => {
    onFirst = r;
  });
  const req = request(`${url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
  });
  const done = new Promise<StreamResult>((resolve) => {
    req.on("response", (res) => {
      const parts: Buffer[] = [];
      res.on("data", (d: Buffer) => {
        parts.push(d);
        onFirst();
      });
      const finish = (complete: boolean) =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(parts).toString("utf8"),
          complete,
          ms: performance.now() - t0,
        });
      res.on("end", () => finish(true));
      res.on("aborted", () => finish(false));
      res.on("error", () => finish(false));
    });
    req.on("error", () => {
      onFirst();
      resolve({ status: 0, headers: {}, body: "", complete: false, ms: performance.now() - t0 });
    });
  });
  req.end(payload);
  return { firstChunk, done, destroy: () => req.destroy() };
}

export async function getJson(url: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  return { status: res.status, body: text === "" ? null : JSON.parse(text) };
}

/** Polls until `fn` returns a value (not undefined), or fails after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 20_000,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export function quantiles(xs: number[]): { n: number; p50: number; p90: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) =>
    s.length === 0 ? 0 : Math.round(s[Math.min(s.length - 1, Math.floor(p * s.length))]);
  return { n: s.length, p50: q(0.5), p90: q(0.9), max: Math.round(s.at(-1) ?? 0) };
}
