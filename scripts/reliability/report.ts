// Regenerates docs/reliability.md from measurements: runs the reliability suite (test/reliability, full
// profile unless --profile short) with each test writing its figures to scripts/reliability/results/
// tests/, then renders every promise with its figures plus the last soak (results/soak.json, written by
// bench/soak.ts). --no-run renders from the stored results only. Run: npm run reliability
// Invariant: the document only states figures read from those files; a missing one is shown as missing.

import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, totalmem } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { slope } from "../../src/bench/stats.ts";

const ROOT = resolve(import.meta.dirname, "..", "..");
const RESULTS = join(ROOT, "scripts", "reliability", "results");
const TESTS_OUT = join(RESULTS, "tests");
const DOC = join(ROOT, "docs", "reliability.md");

const { values } = parseArgs({
  options: { "no-run": { type: "boolean", default: false }, profile: { type: "string", default: "full" } },
});

type Figures = Record<string, unknown> & { name: string; promise: string; profile: string; at: string };
interface RunInfo {
  profile: string;
  command: string;
  pass: number;
  fail: number;
  wallS: number;
  commit: string;
  at: string;
  machine: string;
}

function git(...args: string[]): string {
  const r = spawnSync("git", args, { cwd: ROOT, encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : "unknown";
}

function machine(): string {
  return `${availableParallelism()} CPUs (${cpus()[0]?.model.trim() ?? "?"}), ${Math.round(totalmem() / 2 ** 30)} GiB RAM, Node ${process.version}`;
}

function runSuite(profile: string): RunInfo {
  rmSync(TESTS_OUT, { recursive: true, force: true });
  mkdirSync(TESTS_OUT, { recursive: true });
  const dir = join(ROOT, "test", "reliability");
  const files = readdirSync(dir)
    .filter((f) => f.endsWith(".test.ts"))
    .sort()
    .map((f) => join("test", "reliability", f));
  // One file at a time: the figures (latencies, recovery times) should not measure a neighbour's load.
  const args = ["--import", "tsx", "--test", "--test-concurrency=1", ...files];
  const t0 = performance.now();
  const r = spawnSync(process.execPath, args, {
    cwd: ROOT,
    encoding: "utf8",
    env: { ...process.env, RELIABILITY_OUT: TESTS_OUT, RELIABILITY_PROFILE: profile },
    maxBuffer: 256 * 2 ** 20,
  });
  const out = `${r.stdout}${r.stderr}`;
  const count = (k: string) => Number(new RegExp(`^# ${k} (\\d+)`, "m").exec(out)?.[1] ?? 0);
  const info: RunInfo = {
    profile,
    command: `RELIABILITY_PROFILE=${profile} node --import tsx --test --test-concurrency=1 test/reliability/*.test.ts`,
    pass: count("pass"),
    fail: count("fail") + count("cancelled"),
    wallS: Math.round((performance.now() - t0) / 100) / 10,
    commit: git("rev-parse", "--short", "HEAD"),
    at: new Date().toISOString(),
    machine: machine(),
  };
  writeFileSync(join(TESTS_OUT, "run.json"), `${JSON.stringify(info, null, 2)}\n`);
  if (info.fail > 0)
    process.stderr.write(
      out
        .split("\n")
        .filter((l) => /not ok|error:/.test(l))
        .join("\n"),
    );
  return info;
}

function readJson<T>(path: string): T | null {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as T;
  } catch {
    return null;
  }
}

function fmt(v: unknown): string {
  if (v === null || v === undefined) return "—";
  if (typeof v !== "object") return String(v);
  if (Array.isArray(v)) return v.map(fmt).join(", ");
  const o = v as Record<string, unknown>;
  if ("p50" in o && "max" in o) return `p50 ${o.p50} · p90 ${o.p90} · max ${o.max} (n=${o.n})`;
  return Object.entries(o)
    .map(([k, x]) => `${k}: ${fmt(x)}`)
    .join("; ");
}

// Section order and where each promise is tested.
const SECTIONS: Array<{ title: string; names: Array<[string, string]> }> = [
  {
    title: "Executor and worker crashes",
    names: [
      ["executor-crash", "executor-crash.test.ts"],
      ["handler-crash", "handler-crash.test.ts"],
    ],
  },
  {
    title: "Overload",
    names: [
      ["overload-queue", "overload.test.ts"],
      ["overload-batch", "overload.test.ts"],
      ["overload-silent-reader", "overload.test.ts"],
    ],
  },
  {
    title: "Disconnects",
    names: [
      ["disconnect-one", "disconnect.test.ts"],
      ["disconnect-many", "disconnect.test.ts"],
    ],
  },
  {
    title: "Hostile input",
    names: [
      ["fuzz-http", "fuzz-http.test.ts"],
      ["fuzz-socket", "fuzz-http.test.ts"],
      ["fuzz-config", "fuzz-config.test.ts"],
    ],
  },
  {
    title: "Shutdown",
    names: [
      ["shutdown-drain", "shutdown.test.ts"],
      ["shutdown-timeout", "shutdown.test.ts"],
    ],
  },
  { title: "Exposure", names: [["exposure", "exposure.test.ts"]] },
];

function figureSection(name: string, file: string): string {
  const f = readJson<Figures>(join(TESTS_OUT, `${name}.json`));
  if (!f) return `- **${name}** (${file}): no figures recorded in the last run.\n`;
  const { name: _n, promise, profile: _p, at: _a, ...rest } = f;
  const rows = Object.entries(rest)
    .map(([k, v]) => `| ${k} | ${fmt(v)} |`)
    .join("\n");
  return `**${promise}.** Test: \`test/reliability/${file}\`.\n\n| figure | value |\n|---|---|\n${rows}\n`;
}

/** The parts of bench/soak.ts's result this page shows. */
interface SoakResult {
  complete: boolean;
  elapsedS: number;
  finishedAt: string;
  config: { minutes: number; clients: number; maxNewTokens: number; model: string };
  machine: { cpus: number; node: string };
  code?: { commit: string; dirtySrcFiles: number };
  totals: {
    requests: number;
    ok: number;
    tokens: number;
    byStatus: Record<string, number>;
    malformed: string[];
  };
  memory: {
    rssFirstMiB: number;
    rssLastMiB: number;
    rssMaxMiB: number;
    rssSlopeMiBPerHour: number;
    heapSlopeMiBPerHour: number;
  };
  eventLoop: { p50MedianMs: number; p99MaxMs: number; maxMs: number };
  samples: Array<Record<string, number>>;
  windows: Array<Record<string, number>>;
  shutdown?: { code: number | null; ms: number };
}

/** The GPU rank kill runs only on an NVIDIA machine (scripts/reliability/gpu-rank-kill.sh); its output is kept. */
function gpuRankKillSection(): string {
  const file = join(RESULTS, "gpu-rank-kill.txt");
  if (!existsSync(file))
    return "Not measured: killing a GPU executor rank mid-stream (scripts/reliability/gpu-rank-kill.sh).\n";
  const lines = readFileSync(file, "utf8").split("\n");
  // Each stream line says how many jsonlines it got and how it ended: the error line, or its last token.
  const endings = (round: string) =>
    lines
      .filter((l) => l.startsWith(`round ${round} stream `))
      .map((l) => {
        const n = Number(/: (\d+) lines;/.exec(l)?.[1] ?? Number.NaN);
        return l.includes('"finish_reason":"error"')
          ? `error line after ${n - 1} tokens`
          : `complete (${n} tokens)`;
      });
  const rounds = lines
    .filter((l) => /^round \d+: /.test(l))
    .map((l) => `${l} — streams: ${endings(/^round (\d+)/.exec(l)![1]).join(", ")}`);
  return `## GPU executor rank killed mid-stream

Command, on the GPU machine (\`.gpu-node/\` from scripts/gpu/build-bundle.sh carried):
\`ROUNDS=3 bash scripts/reliability/gpu-rank-kill.sh\` (\`lmi serve models/tiny-kjv --executor gpu\`, 4 streams of
900 tokens per round, SIGKILL of the Python rank 0.6 s in). Its output is kept in
scripts/reliability/results/gpu-rank-kill.txt; per round:

${rounds.map((l) => `- ${l}`).join("\n")}

A round whose streams show 900 lines finished before the kill (the tiny model decodes 900 tokens in under
0.6 s on an H100): that kill hit an idle rank. /ping answers 500 right after a kill (the model is FAILED once
its failure count passes retry_threshold, spec §5.8) while the registry restarts the executor.
`;
}

function soakSection(): string {
  const s = readJson<SoakResult>(join(RESULTS, "soak.json"));
  if (!s) return "No soak result yet: run `npm run soak`.\n";
  const samples = (s.samples ?? []) as Array<Record<string, number>>;
  // Drift over the second half: the first half includes heap and allocator warm-up.
  const half = samples.slice(Math.floor(samples.length / 2));
  const t = half.map((x) => x.tS);
  const rssSlope2 =
    Math.round(
      slope(
        t,
        half.map((x) => x.rssMiB),
      ) *
        3600 * // MiB per hour
        10,
    ) / 10;
  const heapSlope2 =
    Math.round(
      slope(
        t,
        half.map((x) => x.heapUsedMiB),
      ) *
        3600 *
        10,
    ) / 10;
  const step = Math.max(1, Math.floor(samples.length / 12));
  const table = samples
    .filter((_, i) => i % step === 0 || i === samples.length - 1)
    .map(
      (x) =>
        `| ${Math.round(x.tS / 60)} | ${x.rssMiB} | ${x.heapUsedMiB} | ${x.eldP50Ms} | ${x.eldP99Ms} | ${x.eldMaxMs} | ${x.activeHandles} |`,
    )
    .join("\n");
  const windows = (s.windows ?? []) as Array<Record<string, number>>;
  const pings = windows.map((w) => w.pingMs).filter((p) => p >= 0);
  const tokPerS = windows.length ? Math.round(s.totals.tokens / (s.elapsedS || 1)) : 0;
  const c = s.config;
  const complete = s.complete
    ? `complete (${Math.round(s.elapsedS / 60)} of ${c.minutes} minutes)`
    : `**incomplete**: ${Math.round((s.elapsedS ?? 0) / 60)} of ${c.minutes} minutes`;
  return `Command: \`npx tsx bench/soak.ts --minutes ${c.minutes} --clients ${c.clients} --tokens ${c.maxNewTokens}\`
(the real \`lmi serve\` on \`${c.model.replace(`${ROOT}/`, "")}\`, loopback; half the clients stream LMI jsonlines on
/invocations, half OpenAI SSE chat; the server reports on itself through \`scripts/reliability/monitor.mjs\`).
Run ${complete}, finished ${s.finishedAt}, on ${s.machine.cpus} CPUs, Node ${s.machine.node}, code at
${s.code?.commit ?? "?"}${s.code?.dirtySrcFiles ? ` with ${s.code.dirtySrcFiles} uncommitted files under src/ (work in progress of other engineers at the time)` : ""}.

| figure | value |
|---|---|
| requests | ${s.totals.requests} (by status: ${fmt(s.totals.byStatus)}) |
| well-formed streams | ${s.totals.ok} |
| malformed or failed | ${s.totals.malformed.length}${s.totals.malformed.length ? `: ${s.totals.malformed.slice(0, 3).join(" / ")}` : ""} |
| generated tokens | ${s.totals.tokens} (${tokPerS} tok/s overall) |
| RSS | first after warm-up ${s.memory.rssFirstMiB} MiB, last ${s.memory.rssLastMiB} MiB, max ${s.memory.rssMaxMiB} MiB |
| RSS drift | ${s.memory.rssSlopeMiBPerHour} MiB/h after the first tenth; ${rssSlope2} MiB/h over the second half |
| JS heap drift | ${s.memory.heapSlopeMiBPerHour} MiB/h after the first tenth; ${heapSlope2} MiB/h over the second half |
| event-loop delay | median of per-interval p50 ${s.eventLoop.p50MedianMs} ms, worst interval p99 ${s.eventLoop.p99MaxMs} ms, max ${s.eventLoop.maxMs} ms (10 ms resolution) |
| /ping latency under load | ${pings.length ? `median ${pings.sort((a, b) => a - b)[Math.floor(pings.length / 2)]} ms, max ${Math.max(...pings)} ms` : "—"} |
| SIGTERM at the end | ${s.shutdown ? `exit code ${s.shutdown.code}, ${s.shutdown.ms} ms` : "—"} |

| minute | RSS MiB | heap MiB | loop delay p50 ms | p99 ms | max ms | handles |
|---|---|---|---|---|---|---|
${table}
`;
}

function render(run: RunInfo | null): string {
  const head = `# Reliability: promises and the figures behind them

Generated by \`npm run reliability\` (scripts/reliability/report.ts) from the last measured run; do not
edit by hand. The CI runs the same tests in a short profile (\`npm test\`, fewer rounds); this page
comes from the full profile unless stated below. The soak is separate: \`npm run soak\`.

`;
  const runLine = run
    ? `Last suite run: ${run.at}, profile **${run.profile}**, ${run.pass} passed, ${run.fail} failed, ${run.wallS} s,
commit ${run.commit}, on ${run.machine}.
Command: \`${run.command}\`.
`
    : "No suite run recorded.\n";
  const body = SECTIONS.map(
    (sec) => `## ${sec.title}\n\n${sec.names.map(([n, f]) => figureSection(n, f)).join("\n")}`,
  ).join("\n");
  return `${head}${runLine}
${body}
${gpuRankKillSection()}

## Soak

${soakSection()}
## Found and fixed by this suite

- An engine death reached the registry only through a 500 ms poll: \`/ping\` said Healthy and new
  requests hit the dead engine in that window (src/registry/engine-backend.ts now uses engine.onDeath).
- \`CpuExecutor.shutdown()\` awaited a terminating worker that does not hold the event loop open, so
  the process could end before shutdown resolved (src/executor/cpu/cpu-executor.ts).
- SIGTERM cut every in-flight stream at once; close() now stops accepting, drains, then stops the
  engines (src/server/start.ts, src/server/serve.ts).
- During that drain, keep-alive connections whose responses had ended stayed open until the client
  dropped them (about 5 s with Node's agent), holding the exit; they are now closed as they go idle.
- A Python handler stream whose worker died ended as a clean, complete-looking 200 (silent
  truncation); the connection is now dropped without the final chunk (src/server/handler-invoke.ts).

## What each promise means

- **Crash**: an executor thread or a handler worker that dies fails every in-flight request at once —
  an error line at the end of a started stream (a dropped connection for a raw handler stream, whose
  format is the handler's), 424 for a plain request — and requests that arrive while it restarts get
  503 (engine) or 400 "Backend Python process is stopped" (handler, spec §5.8). \`/ping\` reports 503
  Unhealthy while the engine restarts and, with DJL's default \`retry_threshold=0\`, 500 FAILED after
  the first crash (spec §6.1). Recovery time is from the kill to the first 200.
- **Overload**: admission beyond \`job_queue_size\` fails fast with 503 WlmCapacityException; beyond
  \`max_rolling_batch_size\` requests wait in arrival order. The engine never waits for a client to read.
- **Disconnect**: a closed connection aborts its request; the scheduler frees its KV blocks at the
  next step.
- **Hostile input**: no input produces a 5xx, a crash or a hang; headers over 16 KiB get 431 and bodies
  over \`max_request_size\` (64 MiB) get 413 by default.
- **Shutdown**: SIGTERM closes the listeners, lets in-flight requests finish for up to
  \`LMI_SHUTDOWN_DRAIN_S\` (default 30 s), then stops the engines (a stream still running ends with its
  error line) and exits 0.
- **Exposure**: listeners bind to 127.0.0.1 unless \`inference_address\`/\`management_address\` or
  \`--host\` say otherwise.
`;
}

const run = values["no-run"] ? readJson<RunInfo>(join(TESTS_OUT, "run.json")) : runSuite(values.profile!);
writeFileSync(DOC, render(run));
console.log(`wrote ${DOC}${run ? ` (suite: ${run.pass} passed, ${run.fail} failed)` : ""}`);
if (run && run.fail > 0) process.exitCode = 1;
if (!existsSync(join(RESULTS, "soak.json"))) console.log("no soak result yet: npm run soak");
