// Load program: N concurrent streaming clients (half LMI jsonlines on /invocations, half OpenAI SSE
// chat on /v1/chat/completions), R requests each, against a running server on loopback. Every stream
// is checked for well-formedness (each line parses, tokens add up to generated_text, the last line
// carries finish_reason, [DONE] closes SSE) and every request must come back 200: none lost.
// Bounded: a deadline aborts everything. Run: npx tsx test/e2e/load-stream.ts [--clients 64]
// [--requests 2] [--tokens 24] [--url http://127.0.0.1:8080]  (without --url it spawns lmi serve).

export interface LoadOptions {
  url: string;
  clients: number;
  requestsPerClient: number;
  maxNewTokens: number;
  deadlineMs: number;
}

export interface LoadResult {
  sent: number;
  ok: number;
  malformed: string[];
  failed: string[];
  tokens: number;
  wallMs: number;
  ttftMs: number[];
  latencyMs: number[];
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

export function summarize(r: LoadResult): string {
  const t = [...r.ttftMs].sort((a, b) => a - b);
  const l = [...r.latencyMs].sort((a, b) => a - b);
  return [
    `requests sent ${r.sent}, ok ${r.ok}, malformed ${r.malformed.length}, failed ${r.failed.length}`,
    `wall ${(r.wallMs / 1000).toFixed(2)} s, tokens ${r.tokens}, throughput ${(r.tokens / (r.wallMs / 1000)).toFixed(1)} tok/s`,
    `TTFT ms p50 ${pct(t, 50).toFixed(0)} p90 ${pct(t, 90).toFixed(0)} p99 ${pct(t, 99).toFixed(0)}`,
    `latency ms p50 ${pct(l, 50).toFixed(0)} p90 ${pct(l, 90).toFixed(0)} p99 ${pct(l, 99).toFixed(0)}`,
  ].join("\n");
}

async function readStream(res: Response, onFirst: () => void): Promise<string> {
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  let text = "";
  let first = true;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    if (first) {
      onFirst();
      first = false;
    }
    text += dec.decode(value, { stream: true });
  }
  return text + dec.decode();
}

/** Returns an error description, or null when the LMI jsonlines stream is well-formed. */
export function checkJsonlines(text: string, maxNewTokens: number): { error: string | null; tokens: number } {
  const lines = text.split("\n").filter((l) => l !== "");
  let joined = "";
  for (let i = 0; i < lines.length; i++) {
    let o: {
      token?: { text: string };
      generated_text?: string;
      details?: { finish_reason: string; generated_tokens: number };
    };
    try {
      o = JSON.parse(lines[i]);
    } catch {
      return { error: `line ${i} is not JSON: ${lines[i]}`, tokens: 0 };
    }
    if (!o.token) return { error: `line ${i} has no token`, tokens: 0 };
    joined += o.token.text;
    const last = i === lines.length - 1;
    if (last !== (o.generated_text !== undefined))
      return { error: `generated_text on line ${i} of ${lines.length}`, tokens: 0 };
    if (last) {
      if (o.generated_text !== joined)
        return { error: "token texts do not add up to generated_text", tokens: 0 };
      if (!o.details || o.details.finish_reason === "error")
        return { error: `bad details ${JSON.stringify(o.details)}`, tokens: 0 };
      if (o.details.generated_tokens !== lines.length)
        return { error: "generated_tokens != number of lines", tokens: 0 };
      if (o.details.generated_tokens > maxNewTokens)
        return { error: "more tokens than max_new_tokens", tokens: 0 };
    }
  }
  if (lines.length === 0) return { error: "empty stream", tokens: 0 };
  return { error: null, tokens: lines.length };
}

/** Returns an error description, or null when the OpenAI SSE chat stream is well-formed. */
export function checkSseChat(text: string): { error: string | null; tokens: number } {
  const events = text.split("\n\n").filter((e) => e !== "");
  if (events.at(-1) !== "data: [DONE]") return { error: "stream does not end with data: [DONE]", tokens: 0 };
  let finish: string | null = null;
  let usage: { completion_tokens: number } | null = null;
  for (const e of events.slice(0, -1)) {
    if (!e.startsWith("data: ")) return { error: `event without data: ${e}`, tokens: 0 };
    let o: {
      object: string;
      choices: Array<{ finish_reason: string | null }>;
      usage?: { completion_tokens: number } | null;
    };
    try {
      o = JSON.parse(e.slice(6));
    } catch {
      return { error: `event is not JSON: ${e}`, tokens: 0 };
    }
    if (o.object !== "chat.completion.chunk") return { error: `object ${o.object}`, tokens: 0 };
    if (o.usage) usage = o.usage;
    if (o.choices[0]?.finish_reason) finish = o.choices[0].finish_reason;
  }
  if (!finish) return { error: "no finish_reason", tokens: 0 };
  if (!usage) return { error: "no usage chunk", tokens: 0 };
  return { error: null, tokens: usage.completion_tokens };
}

export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const r: LoadResult = {
    sent: 0,
    ok: 0,
    malformed: [],
    failed: [],
    tokens: 0,
    wallMs: 0,
    ttftMs: [],
    latencyMs: [],
  };
  const deadline = AbortSignal.timeout(o.deadlineMs);
  const t0 = performance.now();
  const client = async (c: number) => {
    for (let n = 0; n < o.requestsPerClient; n++) {
      const chat = c % 2 === 1;
      const start = performance.now();
      r.sent++;
      try {
        const res = chat
          ? await fetch(`${o.url}/v1/chat/completions`, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({
                messages: [{ role: "user", content: `Question ${c}.${n}: who begat whom?` }],
                max_tokens: o.maxNewTokens,
                stream: true,
                stream_options: { include_usage: true },
                seed: c * 1000 + n,
                temperature: 1,
              }),
              signal: deadline,
            })
          : await fetch(`${o.url}/invocations`, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({
                inputs: `And it came to pass, client ${c} request ${n},`,
                parameters: {
                  max_new_tokens: o.maxNewTokens,
                  do_sample: true,
                  seed: c * 1000 + n,
                  details: true,
                },
                stream: true,
              }),
              signal: deadline,
            });
        if (res.status !== 200) {
          r.failed.push(`client ${c} #${n}: HTTP ${res.status} ${await res.text()}`);
          continue;
        }
        const text = await readStream(res, () => r.ttftMs.push(performance.now() - start));
        const check = chat ? checkSseChat(text) : checkJsonlines(text, o.maxNewTokens);
        r.latencyMs.push(performance.now() - start);
        if (check.error) r.malformed.push(`client ${c} #${n}: ${check.error}`);
        else {
          r.ok++;
          r.tokens += check.tokens;
        }
      } catch (err) {
        r.failed.push(`client ${c} #${n}: ${(err as Error).message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: o.clients }, (_, c) => client(c)));
  r.wallMs = performance.now() - t0;
  return r;
}

async function main(): Promise<void> {
  const { parseArgs } = await import("node:util");
  const { values } = parseArgs({
    options: {
      clients: { type: "string", default: "64" },
      requests: { type: "string", default: "2" },
      tokens: { type: "string", default: "24" },
      url: { type: "string" },
      deadline: { type: "string", default: "300" },
    },
  });
  let url = values.url;
  let stop: (() => Promise<void>) | undefined;
  if (!url) {
    const { startServe, testModelDir } = await import("./serve-process.ts");
    const s = await startServe([testModelDir()], { LMI_LOG_LEVEL: "warn" });
    url = s.url;
    stop = s.stop;
  }
  try {
    const result = await runLoad({
      url,
      clients: Number(values.clients),
      requestsPerClient: Number(values.requests),
      maxNewTokens: Number(values.tokens),
      deadlineMs: Number(values.deadline) * 1000,
    });
    console.log(summarize(result));
    for (const m of [...result.malformed, ...result.failed].slice(0, 10)) console.log(m);
    process.exitCode = result.ok === result.sent ? 0 : 1;
  } finally {
    await stop?.();
  }
}

if (process.argv[1] && import.meta.filename === process.argv[1]) await main();
