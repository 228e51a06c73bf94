// Sends one streaming benchmark request and times it the way `vllm bench serve` does: the clock starts
// just before the request is sent; TTFT is the first chunk's arrival, each later chunk adds one ITL gap,
// and latency ends at the last chunk. Stream framing (jsonlines or SSE `data:` lines) is undone here;
// what a message means is the backend's business. A failed request never throws: it returns success=false.

import type { BackendSpec, BodyInput } from "./backends.ts";
import type { RequestResult } from "./metrics.ts";

export interface SendOptions {
  url: string;
  timeoutMs: number;
  extraBody?: Record<string, unknown>;
  /** Clock, injectable for tests; performance.now() by default. */
  now?: () => number;
}

/** Turns one stream line into a JSON message, or null for framing (blank, SSE comments/fields, [DONE]). */
export function decodeStreamLine(line: string): unknown | null {
  const s = line.trim();
  if (s === "" || s.startsWith(":")) return null;
  if (s.startsWith("data:")) {
    const data = s.slice(5).trim();
    if (data === "[DONE]" || data === "") return null;
    return JSON.parse(data);
  }
  if (/^(event|id|retry):/.test(s)) return null;
  return JSON.parse(s);
}

/** Splits a byte stream into lines, each tagged with the time its last byte arrived. */
export async function* timedLines(
  body: ReadableStream<Uint8Array>,
  now: () => number,
): AsyncGenerator<{ line: string; t: number }> {
  const decoder = new TextDecoder();
  let buf = "";
  const reader = body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    const t = now();
    buf += done ? decoder.decode() : decoder.decode(value, { stream: true });
    let nl = buf.indexOf("\n");
    while (nl >= 0) {
      yield { line: buf.slice(0, nl), t };
      buf = buf.slice(nl + 1);
      nl = buf.indexOf("\n");
    }
    if (done) {
      // LMI's Java-level error ends a stream without a newline (spec §3.4).
      if (buf.trim() !== "") yield { line: buf, t };
      return;
    }
  }
}

export async function sendRequest(
  backend: BackendSpec,
  input: BodyInput & { promptLen: number },
  opts: SendOptions,
): Promise<RequestResult> {
  const now = opts.now ?? (() => performance.now());
  const body = { ...backend.buildBody(input), ...(opts.extraBody ?? {}) };
  const result: RequestResult = {
    success: false,
    promptLen: input.promptLen,
    outputTokens: 0,
    startMs: now(),
    ttftMs: 0,
    itlMs: [],
    latencyMs: 0,
  };
  const st = result.startMs;
  let lastChunk: number | null = null;
  let counted = 0;
  let reported: number | undefined;
  try {
    const res = await fetch(opts.url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(opts.timeoutMs),
    });
    if (!res.ok || res.body === null) {
      const text = (await res.text()).slice(0, 300);
      return { ...result, error: `HTTP ${res.status}: ${text}` };
    }
    for await (const { line, t } of timedLines(res.body, now)) {
      let msg: unknown;
      try {
        msg = decodeStreamLine(line);
      } catch {
        return { ...result, error: `unparsable stream line: ${line.slice(0, 200)}` };
      }
      if (msg === null) continue;
      const ev = backend.parse(msg);
      if (ev.error !== undefined) return { ...result, error: ev.error };
      if (ev.reportedTokens !== undefined) reported = ev.reportedTokens;
      if (!ev.isChunk) continue;
      counted += ev.numTokens;
      if (lastChunk === null) result.ttftMs = t - st;
      else result.itlMs.push(t - lastChunk);
      lastChunk = t;
    }
  } catch (err) {
    const e = err as Error;
    const cause = (e.cause as Error | undefined)?.message;
    const why =
      e.name === "TimeoutError"
        ? `timed out after ${opts.timeoutMs} ms`
        : `${e.message}${cause ? ` (${cause})` : ""}`;
    return { ...result, error: `request failed: ${why}` };
  }
  if (lastChunk === null) return { ...result, error: "the stream ended without any generated chunk" };
  result.latencyMs = lastChunk - st;
  result.outputTokens = reported ?? counted;
  result.success = true;
  return result;
}
