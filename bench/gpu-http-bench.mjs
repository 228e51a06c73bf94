#!/usr/bin/env node
// HTTP benchmark against a running `lmi serve` (plain JS so the carried Node binary runs it without tsx):
// streams /v1/completions with token-id prompts and ignore_eos (vLLM `bench serve` semantics: TTFT = first
// chunk with text, TPOT = (E2E - TTFT) / (n - 1), output tok/s = sum of completion tokens / wall time).
// Phases: one 512-token prompt on the idle server (TTFT, 3 runs), one request decoding alone (batch-1
// tok/s), then N requests of I in / O out sent at once. Prints JSON; --json-out writes it too.
import { writeFileSync } from "node:fs";

const args = Object.fromEntries(
  process.argv.slice(2).map((a) => {
    const [k, v] = a.replace(/^--/, "").split("=");
    return [k, v ?? "true"];
  }),
);
const url = args.url ?? "http://127.0.0.1:8080";
const model = args.model ?? "model";
const N = Number(args.requests ?? 256);
const IN = Number(args["input-len"] ?? 512);
const OUT = Number(args["output-len"] ?? 256);
const VOCAB = Number(args.vocab ?? 128000);

let seed = 12345;
function rand() {
  seed = (seed * 1103515245 + 12345) % 2 ** 31;
  return seed / 2 ** 31;
}
const prompt = (n) => Array.from({ length: n }, () => Math.floor(rand() * VOCAB));

async function one(ids, maxTokens) {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model,
      prompt: ids,
      max_tokens: maxTokens,
      temperature: 0,
      ignore_eos: true,
      stream: true,
      stream_options: { include_usage: true },
    }),
  });
  if (!res.ok) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  let ttft = null;
  let tokens = 0;
  let buf = "";
  const dec = new TextDecoder();
  for await (const chunk of res.body) {
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
  return { ttft, e2e, tokens };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const res = { url, requests: N, inputLen: IN, outputLen: OUT };
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
const t0 = performance.now();
const all = await Promise.all(Array.from({ length: N }, () => one(prompt(IN), OUT)));
const wall = (performance.now() - t0) / 1000;
const outTok = all.reduce((a, r) => a + r.tokens, 0);
res.burst = {
  wallSeconds: wall,
  outputTokens: outTok,
  outputTokPerS: outTok / wall,
  totalTokPerS: (outTok + N * IN) / wall,
  medianTtftMs: median(all.map((r) => r.ttft)),
  medianTpotMs: median(all.map((r) => (r.e2e - r.ttft) / (r.tokens - 1))),
};
console.log(JSON.stringify(res, null, 1));
if (args["json-out"]) writeFileSync(args["json-out"], JSON.stringify(res, null, 1));
console.log(
  `| HTTP idle TTFT 512 | ${res.idleTtft512Ms.toFixed(1)} ms (median of ${ttftRuns}, min ${res.idleTtft512MinMs.toFixed(1)}) |\n| HTTP batch-1 decode | ${res.batch1.tokPerS.toFixed(1)} tok/s |\n` +
    `| HTTP ${N}x(${IN}/${OUT}) | ${res.burst.outputTokPerS.toFixed(0)} output tok/s (wall ${wall.toFixed(2)} s) |`,
);
