#!/usr/bin/env node
// HTTP benchmark against a running `lmi serve` (plain JS so the carried Node binary runs it without tsx):
// streams /v1/completions with token-id prompts and ignore_eos (vLLM `bench serve` semantics: TTFT = first
// chunk with text, TPOT = (E2E - TTFT) / (n - 1), output tok/s = sum of completion tokens / wall time).
// Phases: one 512-token prompt on the idle server (TTFT, 3 runs), one request decoding alone (batch-1
// tok/s), then N requests of I in / O out sent at once (their prompts drawn before the clock starts). Prints
// JSON; --json-out writes it too. --client=fetch sends with fetch instead of node:http (see post()).
// --extra='{"repetition_penalty":1.1}' merges more request fields into every request (sampling settings);
// write the JSON without spaces when it passes through server-bench.sh's LMI_BENCH_ARGS.
import { writeFileSync } from "node:fs";
import http from "node:http";

const args = Object.fromEntries(
  process.argv.slice(2).map((a) => {
    const [k, ...v] = a.replace(/^--/, "").split("=");
    return [k, v.length ? v.join("=") : "true"];
  }),
);
const url = args.url ?? "http://127.0.0.1:8080";
const model = args.model ?? "model";
const N = Number(args.requests ?? 256);
const IN = Number(args["input-len"] ?? 512);
const OUT = Number(args["output-len"] ?? 256);
const VOCAB = Number(args.vocab ?? 128000);
const EXTRA = args.extra ? JSON.parse(args.extra) : {};

// --seed: another set of prompts. Runs against one server need their own: the server's prefix cache would serve a
// repeated prompt's blocks without computing them.
// (mulberry32: exact 32-bit integer steps. The generator before the twenty-first session multiplied past 2^53 in
// doubles and cycled every 10,466 values: within one run no two prompts shared a first KV block, but runs with
// other seeds drew shifted copies of the same tokens, and one such burst on a reused server hit the prefix cache.)
let seed = Number(args.seed ?? 12345) >>> 0;
function rand() {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
}
const prompt = (n) => Array.from({ length: n }, () => Math.floor(rand() * VOCAB));

/** The streamed body's chunks: node:http through a keep-alive agent with no socket limit (default), or fetch
 * (--client=fetch, as before 2026-11-27). Sending 256 requests at once, fetch spent ~130 ms of the client's own
 * time before the first one reached the server (256 fresh connections; measured on the H100 host), which the
 * burst's wall clock counted; node:http sends the first within ~15-25 ms. */
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
async function* post(body) {
  if (args.client === "fetch") {
    const res = await fetch(`${url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    });
    if (!res.ok) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
    yield* res.body;
    return;
  }
  const res = await new Promise((resolve, reject) => {
    const req = http.request(`${url}/v1/completions`, {
      method: "POST",
      agent,
      headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
    });
    req.on("response", resolve);
    req.on("error", reject);
    req.end(body);
  });
  if (res.statusCode !== 200) {
    let text = "";
    for await (const c of res) text += c;
    throw new Error(`HTTP ${res.statusCode}: ${text}`);
  }
  yield* res;
}

async function one(ids, maxTokens) {
  const t0 = performance.now();
  const body = JSON.stringify({
    model,
    prompt: ids,
    max_tokens: maxTokens,
    temperature: 0,
    ignore_eos: true,
    stream: true,
    stream_options: { include_usage: true },
    ...EXTRA,
  });
  let ttft = null;
  let tokens = 0;
  let buf = "";
  const dec = new TextDecoder();
  for await (const chunk of post(body)) {
    buf += dec.decode(chunk, { stream: true });
    let nl = buf.indexOf("\n");
    while (nl >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      nl = buf.indexOf("\n");
      if (!line.startsWith("data:")) continue;
      const data = line.slice(5).trim();
      if (data === "[DONE]") continue;
      const msg = JSON.parse(data);
      if (msg.choices?.length && ttft === null) ttft = performance.now() - t0;
      if (msg.usage) tokens = msg.usage.completion_tokens;
    }
  }
  const e2e = performance.now() - t0;
  // Epoch ms of the stream's end, to line up with the server's step and wire logs (scripts/gpu/step-log-summary.py).
  return { ttft, e2e, tokens, endAt: performance.timeOrigin + performance.now() };
}

/** Starts every burst request without waiting for any answer. By default (--send=interleaved) the client's event
 * loop takes a turn after every 4 requests, so the sockets of those already made connect and write while the rest
 * are being made (vLLM's `bench serve` also interleaves: it creates one asyncio task per request, and each task
 * builds and sends its request between the other tasks' socket events).
 * --send=sync makes all of them in one synchronous loop first (the client before 2026-11-27): nothing reaches the
 * server until the loop ends, and on a 2-vCPU box the 16th request arrived 62-91 ms after the clock started
 * instead of 13-16 ms (a stand-in server that only records arrivals; the last arrival is about the same either
 * way, 78-130 ms). */
async function sendAll(list) {
  if (args.send === "sync") return list.map((ids) => one(ids, OUT));
  const started = [];
  for (let i = 0; i < list.length; i++) {
    started.push(one(list[i], OUT));
    if (i % 4 === 3) await new Promise((resolve) => setImmediate(resolve));
  }
  return started;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const res = {
  url,
  requests: N,
  inputLen: IN,
  outputLen: OUT,
  client: args.client === "fetch" ? "fetch" : "node:http",
  send: args.send === "sync" ? "sync" : "interleaved",
  extra: EXTRA,
};
await one(prompt(IN), 4); // warm-up
const idle = [];
const ttftRuns = Number(args["ttft-runs"] ?? 9);
for (let i = 0; i < ttftRuns; i++) idle.push((await one(prompt(IN), 1)).ttft);
res.idleTtft512Ms = median(idle);
res.idleTtft512MinMs = Math.min(...idle);
res.idleTtft512AllMs = idle;
// Batch-1 decode: the median of three requests (one is noisy on a shared host).
const solos = [];
for (let i = 0; i < 3; i++) {
  const solo = await one(prompt(128), OUT);
  solos.push({ ttftMs: solo.ttft, tpotMs: (solo.e2e - solo.ttft) / (solo.tokens - 1), tokens: solo.tokens });
}
res.batch1 = { ...solos.sort((a, b) => a.tpotMs - b.tpotMs)[1], runs: solos.map((r) => r.tpotMs) };
res.batch1.tokPerS = 1000 / res.batch1.tpotMs;
// The prompts are drawn before the clock starts (vLLM's `bench serve` samples its dataset first too).
const prompts = Array.from({ length: N }, () => prompt(IN));
const t0 = performance.now();
const all = await Promise.all(await sendAll(prompts));
const wall = (performance.now() - t0) / 1000;
const outTok = all.reduce((a, r) => a + r.tokens, 0);
res.burst = {
  wallSeconds: wall,
  outputTokens: outTok,
  outputTokPerS: outTok / wall,
  totalTokPerS: (outTok + N * IN) / wall,
  medianTtftMs: median(all.map((r) => r.ttft)),
  medianTpotMs: median(all.map((r) => (r.e2e - r.ttft) / (r.tokens - 1))),
  startEpochMs: performance.timeOrigin + t0,
  endsEpochMs: all.map((r) => Math.round(r.endAt * 10) / 10).sort((a, b) => a - b),
};
console.log(JSON.stringify(res, null, 1));
if (args["json-out"]) writeFileSync(args["json-out"], JSON.stringify(res, null, 1));
console.log(
  `| HTTP idle TTFT 512 | ${res.idleTtft512Ms.toFixed(1)} ms (median of ${ttftRuns}, min ${res.idleTtft512MinMs.toFixed(1)}) |\n| HTTP batch-1 decode | ${res.batch1.tokPerS.toFixed(1)} tok/s |\n` +
    `| HTTP ${N}x(${IN}/${OUT}) | ${res.burst.outputTokPerS.toFixed(0)} output tok/s (wall ${wall.toFixed(2)} s) |`,
);
agent.destroy();
