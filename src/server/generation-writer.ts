// Runs one engine generation and writes it to the client through an output formatter.
// Invariants (spec §2.4, §3.4): headers wait for the first non-empty chunk, so an error before it
// (prompt too long, queue full, engine dead) gets its own HTTP status; a response whose first chunk
// is also its last goes out with Content-Length; after headers an error ends the stream with the
// formatter's error chunk; a client that disconnects aborts the generation; the queue slot is
// released exactly once.

import type { FastifyReply, FastifyRequest } from "fastify";
import type { GenerateRequest, LlmEngine } from "../engine/protocol.ts";
import { EngineDeadError, ServerError } from "../errors.ts";
import type { ModelEntry } from "../registry/registry.ts";
import type { ServerContext } from "./context.ts";
import type { OutputFormatter } from "./format/types.ts";
import { GenerationTimer } from "./metrics.ts";

export class ReadChunkTimeoutError extends ServerError {
  constructor(limitMs: number, status: number) {
    super(
      `Read chunk timeout: the model produced no output for ${limitMs / 1000} s (chunked_read_timeout).`,
      status,
      "TimeoutException",
    );
  }
}

export interface GenerationJob {
  entry: ModelEntry;
  engine: LlmEngine;
  request: GenerateRequest;
  formatter: OutputFormatter;
  /** The queue slot taken by registry.acquire(). */
  release: () => void;
}

export async function writeGeneration(
  ctx: ServerContext,
  req: FastifyRequest,
  reply: FastifyReply,
  job: GenerationJob,
): Promise<FastifyReply | undefined> {
  const { entry, formatter } = job;
  const res = reply.raw;
  const abort = new AbortController();
  const onClose = () => {
    if (!res.writableFinished) abort.abort(new Error("client disconnected"));
  };
  res.once("close", onClose);
  const timer = new GenerationTimer(ctx.metrics, entry.key);
  // chunked_read_timeout: no output for that long ends the request ("Read chunk timeout", spec §2.4).
  const limitMs = ctx.http.chunkedReadTimeoutMs;
  let timedOut = false;
  let watchdog: NodeJS.Timeout | undefined;
  const arm = () => {
    if (limitMs <= 0) return;
    if (watchdog !== undefined) {
      watchdog.refresh(); // re-arms the same timer: no new one per delta
      return;
    }
    watchdog = setTimeout(() => {
      timedOut = true;
      abort.abort(new Error("read chunk timeout"));
    }, limitMs);
  };
  // The deltas a stream gets in one turn of the event loop (several steps' worth when this thread fell behind the
  // engine's) go to the socket in one write: the first write of a turn corks the response, the check phase of the
  // same turn uncorks it. One system call per stream per turn instead of one per delta (docs/gpu-executor.md).
  let corked = false;
  const uncork = () => {
    corked = false;
    if (!res.writableEnded && !res.destroyed) res.uncork();
  };
  let started = false;
  try {
    arm();
    for await (const out of job.engine.generate(job.request, abort.signal)) {
      arm();
      timer.onTokens(out.tokens.length);
      if (out.finished) timer.onFinish(out.finishReason ?? "length", out.numPromptTokens);
      if (abort.signal.aborted) break;
      const chunk = formatter.delta(out);
      if (!started) {
        if (chunk === "" && !out.finished) continue;
        if (out.finished || !formatter.streaming) {
          return reply.code(200).type(formatter.contentType).send(Buffer.from(chunk));
        }
        started = true;
        reply.hijack();
        res.writeHead(200, { ...headersOf(reply), "content-type": formatter.contentType });
      }
      if (chunk !== "") {
        if (!corked) {
          corked = true;
          res.cork();
          setImmediate(uncork);
        }
        if (!res.write(chunk)) await drained(res);
      }
      if (out.finished) break;
    }
    if (timedOut) throw new ReadChunkTimeoutError(limitMs, ctx.http.timeoutHttpCode);
    if (!started) {
      if (abort.signal.aborted) return reply.code(499).send();
      throw new EngineDeadError("The generation ended without a final output.");
    }
  } catch (err) {
    if (err instanceof EngineDeadError) void ctx.registry.reportDeath(entry, err);
    if (!started) throw err;
    ctx.logger.warn(`stream of ${entry.key} failed after headers: ${(err as Error).message}`, {
      requestId: req.id,
    });
    if (!res.destroyed) res.write(formatter.error(err));
  } finally {
    clearTimeout(watchdog);
    job.release();
    res.off("close", onClose);
    if (started && !res.writableEnded) res.end();
  }
  return undefined;
}

function headersOf(reply: FastifyReply): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(reply.getHeaders())) if (v !== undefined) out[k] = String(v);
  return out;
}

function drained(res: NodeJS.WritableStream & { destroyed?: boolean }): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.once("drain", done);
    res.once("close", done);
  });
}
