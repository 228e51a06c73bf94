// Soak: the real `lmi serve` (tiny model, loopback) under a fixed number of streaming clients for a
// fixed time. The server reports its own RSS, heap and event-loop delay (scripts/reliability/monitor.mjs
// preloaded); the clients count answers by status, check every stream's shape, and time /ping.
// The JSON result is rewritten after every interval, so a run cut short still leaves its figures.
// Run: npx tsx bench/soak.ts --minutes 30 --clients 8 [--out scripts/reliability/results/soak.json]

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { slope } from "../src/bench/stats.ts";
import { checkJsonlines, checkSseChat } from "../test/e2e/load-stream.ts";
import { ROOT, testModelDir } from "../test/e2e/serve-process.ts";

interface Sample {
  tS: number;
  rssMiB: number;
  heapUsedMiB: number;
  externalMiB: number;
  eldP50Ms: number;
  eldP99Ms: number;
  eldMaxMs: number;
  activeHandles: number;
}

interface Window {
  tS: number;
  requests: number;
  ok: number;
  tokens: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  pingMs: number;
}

const { values } = parseArgs({
  options: {
    minutes: { type: "string", default: "30" },
    clients: { type: "string", default: "8" },
    tokens: { type: "string", default: "32" },
    "interval-s": { type: "string", default: "10" },
    out: { type: "string", default: join(ROOT, "scripts", "reliability", "results", "soak.json") },
  },
});
const minutes = Number(values.minutes);
const numClients = Number(values.clients);
const maxNewTokens = Number(values.tokens);
const intervalMs = Number(values["interval-s"]) * 1000;
const outPath = resolve(values.out!);
if (!(minutes > 0 && numClients > 0 && maxNewTokens > 0 && intervalMs >= 1000)) {
  console.error("--minutes, --clients, --tokens must be > 0 and --interval-s >= 1");
  process.exit(2);
}

/** The code the server ran: commit plus how many files under src/ differed from it. */
function codeVersion(): { commit: string; dirtySrcFiles: number } {
  const git = (...a: string[]) => execFileSync("git", a, { cwd: ROOT, encoding: "utf8" }).trim();
  try {
    const dirty = git("status", "--porcelain", "--", "src")
      .split("\n")
      .filter((l) => l !== "").length;
    return { commit: git("rev-parse", "--short", "HEAD"), dirtySrcFiles: dirty };
  } catch {
    return { commit: "unknown", dirtySrcFiles: -1 };
  }
}
const code = codeVersion();

const monitorFile = join(tmpdir(), `lmi-soak-${process.pid}.jsonl`);
rmSync(monitorFile, { force: true });

async function startServer(): Promise<{ url: string; proc: ChildProcess }> {
  const monitor = pathToFileURL(join(ROOT, "scripts", "reliability", "monitor.mjs")).href;
  const proc = spawn(
    process.execPath,
    ["--import", monitor, join(ROOT, "bin", "lmi.mjs"), "serve", testModelDir(), "--port", "0"],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        LMI_LOG_LEVEL: "warn",
        SOAK_MONITOR_FILE: monitorFile,
        SOAK_MONITOR_INTERVAL_MS: String(intervalMs),
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let log = "";
  const url = await new Promise<string>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`server did not start:\n${log}`)), 120_000);
    proc.stdout!.on("data", (d: Buffer) => {
      log += d.toString();
      const m = /bind to: (http:\/\/\S+)/.exec(log);
      if (m) {
        clearTimeout(timer);
        ok(m[1]);
      }
    });
    proc.stderr!.on("data", (d: Buffer) => {
      log += d.toString();
    });
    proc.once("exit", (code) => fail(new Error(`server exited with ${code}:\n${log}`)));
  });
  // Keep draining the pipes so a chatty server never blocks on a full pipe.
  proc.stdout!.resume();
  proc.stderr!.resume();
  return { url, proc };
}

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]);
}

const byStatus: Record<string, number> = {};
const malformed: string[] = [];
const windows: Window[] = [];
let win = { requests: 0, ok: 0, tokens: 0, latency: [] as number[] };
let totalRequests = 0;
let totalOk = 0;
let totalTokens = 0;
let stopping = false;

async function oneRequest(url: string, c: number, n: number): Promise<void> {
  const chat = c % 2 === 1;
  const t0 = performance.now();
  const body = chat
    ? {
        messages: [{ role: "user", content: `Soak ${c}.${n}: who begat whom?` }],
        max_tokens: maxNewTokens,
        stream: true,
        stream_options: { include_usage: true },
        seed: n,
        temperature: 1,
      }
    : {
        inputs: `And it came to pass, soak client ${c} request ${n},`,
        parameters: { max_new_tokens: maxNewTokens, do_sample: true, seed: n, details: true },
        stream: true,
      };
  let key = "network-error";
  try {
    const res = await fetch(`${url}${chat ? "/v1/chat/completions" : "/invocations"}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(120_000),
    });
    key = String(res.status);
    const text = await res.text();
    if (res.status === 200) {
      const check = chat ? checkSseChat(text) : checkJsonlines(text, maxNewTokens);
      if (check.error) {
        key = "200-malformed";
        if (malformed.length < 20) malformed.push(`client ${c} #${n}: ${check.error}`);
      } else {
        win.ok++;
        totalOk++;
        win.tokens += check.tokens;
        totalTokens += check.tokens;
      }
    }
  } catch (err) {
    if (malformed.length < 20) malformed.push(`client ${c} #${n}: ${(err as Error).message}`);
  }
  byStatus[key] = (byStatus[key] ?? 0) + 1;
  win.requests++;
  totalRequests++;
  win.latency.push(performance.now() - t0);
}

async function client(url: string, c: number, deadline: number): Promise<void> {
  for (let n = 0; !stopping && Date.now() < deadline; n++) await oneRequest(url, c, n);
}

function readSamples(): Sample[] {
  try {
    return readFileSync(monitorFile, "utf8")
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => JSON.parse(l) as Sample);
  } catch {
    return [];
  }
}

function summary(extra: Record<string, unknown>) {
  const samples = readSamples();
  // The first tenth (at least one sample) is warm-up: JIT, heap growth to its working size.
  const warm = samples.slice(Math.max(1, Math.floor(samples.length / 10)));
  const rssSlopePerS = slope(
    warm.map((s) => s.tS),
    warm.map((s) => s.rssMiB),
  );
  const heapSlopePerS = slope(
    warm.map((s) => s.tS),
    warm.map((s) => s.heapUsedMiB),
  );
  return {
    kind: "soak",
    finishedAt: new Date().toISOString(),
    config: {
      minutes,
      clients: numClients,
      maxNewTokens,
      intervalS: intervalMs / 1000,
      model: testModelDir(),
    },
    machine: { cpus: availableParallelism(), node: process.version },
    code,
    totals: { requests: totalRequests, ok: totalOk, tokens: totalTokens, byStatus, malformed },
    memory: {
      rssFirstMiB: warm[0]?.rssMiB ?? null,
      rssLastMiB: warm.at(-1)?.rssMiB ?? null,
      rssMaxMiB: Math.max(0, ...samples.map((s) => s.rssMiB)),
      rssSlopeMiBPerHour: Math.round(rssSlopePerS * 3600 * 10) / 10,
      heapSlopeMiBPerHour: Math.round(heapSlopePerS * 3600 * 10) / 10,
    },
    eventLoop: {
      p99MaxMs: Math.max(0, ...samples.map((s) => s.eldP99Ms)),
      maxMs: Math.max(0, ...samples.map((s) => s.eldMaxMs)),
      p50MedianMs: pct(
        samples.map((s) => s.eldP50Ms),
        50,
      ),
    },
    samples,
    windows,
    ...extra,
  };
}

function write(extra: Record<string, unknown>): void {
  mkdirSync(dirname(outPath), { recursive: true });
  writeFileSync(outPath, `${JSON.stringify(summary(extra), null, 2)}\n`);
}

async function main(): Promise<void> {
  const { url, proc } = await startServer();
  const started = Date.now();
  const deadline = started + minutes * 60_000;
  process.once("SIGINT", () => {
    stopping = true;
  });
  const tick = setInterval(async () => {
    const p0 = performance.now();
    let pingMs = -1;
    try {
      const r = await fetch(`${url}/ping`, { signal: AbortSignal.timeout(10_000) });
      await r.text();
      pingMs = Math.round(performance.now() - p0);
    } catch {
      pingMs = -1;
    }
    windows.push({
      tS: Math.round((Date.now() - started) / 1000),
      requests: win.requests,
      ok: win.ok,
      tokens: win.tokens,
      latencyP50Ms: pct(win.latency, 50),
      latencyP99Ms: pct(win.latency, 99),
      pingMs,
    });
    win = { requests: 0, ok: 0, tokens: 0, latency: [] };
    write({ complete: false, elapsedS: Math.round((Date.now() - started) / 1000) });
  }, intervalMs);
  await Promise.all(Array.from({ length: numClients }, (_, c) => client(url, c, deadline)));
  clearInterval(tick);
  const elapsedS = Math.round((Date.now() - started) / 1000);
  // Shutdown is part of the soak: SIGTERM must end the server promptly with status 0.
  const t0 = performance.now();
  const exit = await new Promise<{ code: number | null; signal: string | null }>((done) => {
    proc.once("exit", (code, signal) => done({ code, signal }));
    proc.kill("SIGTERM");
    setTimeout(() => proc.kill("SIGKILL"), 30_000).unref();
  });
  write({
    complete: !stopping,
    elapsedS,
    shutdown: { ...exit, ms: Math.round(performance.now() - t0) },
  });
  rmSync(monitorFile, { force: true });
  const s = JSON.parse(readFileSync(outPath, "utf8"));
  console.log(
    JSON.stringify({ totals: s.totals, memory: s.memory, eventLoop: s.eventLoop, shutdown: s.shutdown }),
  );
}

await main();
