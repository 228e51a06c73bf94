// `lmi bench` end to end: spawns the real `lmi serve` on the tiny model (loopback, free port) and runs
// the real `lmi bench` CLI against it with small counts. Checks the result file against the request
// records it holds and against the server's own Prometheus token counters, and the sweep chart.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { calculateMetrics, type RequestResult } from "../../src/bench/metrics.ts";
import { ROOT, type ServeProcess, startServe, testModelDir } from "../e2e/serve-process.ts";

interface Run {
  max_concurrency: number | null;
  completed: number;
  failed: number;
  duration: number;
  total_input_tokens: number;
  total_output_tokens: number;
  request_goodput: number | null;
  output_throughput: number;
  num_length_mismatches: number;
  errors: string[];
  requests: Array<{
    success: boolean;
    prompt_len: number;
    output_tokens: number;
    start_ms: number;
    ttft_ms: number;
    latency_ms: number;
    itl_ms: number[];
  }>;
  [k: string]: unknown;
}

function lmiBench(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [join(ROOT, "bin", "lmi.mjs"), "bench", "--no-progress", ...args], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (out += d));
    const timer = setTimeout(() => p.kill("SIGKILL"), 120_000);
    p.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

async function counter(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/server/metrics`)).text();
  return [...text.matchAll(new RegExp(`^${name}\\{[^}]*\\} (\\d+)`, "gm"))].reduce(
    (a, m) => a + Number(m[1]),
    0,
  );
}

describe("lmi bench against lmi serve (tiny model)", () => {
  let server: ServeProcess;
  const dir = mkdtempSync(join(tmpdir(), "lmi-bench-e2e-"));
  before(async () => {
    server = await startServe([testModelDir()], { LMI_LOG_LEVEL: "warn", SERVING_PROMETHEUS: "true" });
  });
  after(async () => {
    await server?.stop();
  });

  it("lmi backend: text prompts, fixed lengths, metrics consistent with the request records", async () => {
    const file = join(dir, "lmi.json");
    const r = await lmiBench([
      ...["--base-url", server.url, "--tokenizer", testModelDir(), "--num-prompts", "6"],
      ...["--random-input-len", "24", "--random-output-len", "8", "--ignore-eos", "--max-concurrency", "3"],
      ...["--num-warmups", "2", "--goodput", "e2el:600000", "--result-file", file],
    ]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /Serving Benchmark Result \(max concurrency 3\)/);
    assert.match(r.out, /Mean TPOT \(ms\):/);
    const doc = JSON.parse(readFileSync(file, "utf8"));
    assert.equal(doc.backend, "lmi");
    const run: Run = doc.runs[0];
    assert.equal(run.completed, 6);
    assert.equal(run.failed, 0);
    assert.equal(run.total_output_tokens, 48); // ignore_eos_token: exactly 8 each
    assert.equal(run.num_length_mismatches, 0);
    assert.ok((run.max_concurrent_requests as number) <= 6);
    for (const q of run.requests) {
      assert.equal(q.output_tokens, 8);
      assert.equal(q.itl_ms.length, 7, "one jsonlines line per token: 8 chunks, 7 gaps");
      assert.ok(q.ttft_ms > 0 && q.latency_ms >= q.ttft_ms);
      assert.ok(Math.abs(q.ttft_ms + q.itl_ms.reduce((a, b) => a + b, 0) - q.latency_ms) < 1e-6);
      assert.ok(q.prompt_len >= 20 && q.prompt_len <= 28, `prompt_len ${q.prompt_len}`);
    }
    assert.equal(
      run.total_input_tokens,
      run.requests.reduce((a, q) => a + q.prompt_len, 0),
    );
    // Every aggregate in the file follows from the per-request records by the documented formulas.
    const results: RequestResult[] = run.requests.map((q) => ({
      success: q.success,
      promptLen: q.prompt_len,
      outputTokens: q.output_tokens,
      startMs: q.start_ms,
      ttftMs: q.ttft_ms,
      itlMs: q.itl_ms,
      latencyMs: q.latency_ms,
    }));
    const m = calculateMetrics(results, run.duration, [90, 99], { e2elMs: 600000 });
    assert.equal(run.mean_ttft_ms, m.ttftMs.mean);
    assert.equal(run.p99_tpot_ms, m.tpotMs.percentiles["99"]);
    assert.equal(run.median_itl_ms, m.itlMs.median);
    assert.equal(run.p90_e2el_ms, m.e2elMs.percentiles["90"]);
    assert.equal(run.request_goodput, 6 / run.duration);
    // The run's wall time cannot be shorter than its slowest request.
    assert.ok(run.duration * 1000 >= Math.max(...run.requests.map((q) => q.start_ms + q.latency_ms)));
  });

  it("openai backend: token-id prompts counted exactly as the server counted them; sweep chart", async () => {
    const prompt0 = await counter(server.url, "lmi_prompt_tokens_total");
    const gen0 = await counter(server.url, "lmi_generation_tokens_total");
    const file = join(dir, "sweep.json");
    const r = await lmiBench([
      ...["--backend", "openai", "--base-url", server.url, "--tokenizer", testModelDir()],
      ...[
        "--random-input-len",
        "16",
        "--random-output-len",
        "6",
        "--random-range-ratio",
        "0.5",
        "--ignore-eos",
      ],
      ...[
        "--sweep-concurrency",
        "1,2",
        "--prompts-per-concurrency",
        "2",
        "--result-file",
        file,
        "--label",
        "tiny",
      ],
    ]);
    assert.equal(r.code, 0, r.out);
    const doc = JSON.parse(readFileSync(file, "utf8"));
    const runs: Run[] = doc.runs;
    assert.deepEqual(
      runs.map((x) => [x.max_concurrency, x.completed, x.failed]),
      [
        [1, 2, 0],
        [2, 4, 0],
      ],
    );
    for (const x of runs) assert.equal(x.num_length_mismatches, 0);
    // The server saw the bench's prompts and outputs plus one readiness request (first prompt, <= 8 tokens).
    const ready = runs[0].requests[0];
    const sentIn = runs.reduce((a, x) => a + x.total_input_tokens, 0) + ready.prompt_len;
    const sentOut = runs.reduce((a, x) => a + x.total_output_tokens, 0) + Math.min(ready.output_tokens, 8);
    assert.equal((await counter(server.url, "lmi_prompt_tokens_total")) - prompt0, sentIn);
    assert.equal((await counter(server.url, "lmi_generation_tokens_total")) - gen0, sentOut);
    const svg = readFileSync(join(dir, "sweep.svg"), "utf8");
    assert.equal((svg.match(/<circle/g) ?? []).length, 4, "two levels x two panels");
    assert.match(svg, />c=2</);
    assert.match(svg, />tiny</);
  });

  it("openai-chat backend and a clear failure for a wrong endpoint", async () => {
    const ok = await lmiBench([
      ...["--backend", "openai-chat", "--base-url", server.url, "--tokenizer", testModelDir()],
      ...["--num-prompts", "2", "--random-input-len", "8", "--random-output-len", "4", "--ignore-eos"],
    ]);
    assert.equal(ok.code, 0, ok.out);
    assert.match(ok.out, /Total generated tokens:\s+8\n/);
    const bad = await lmiBench([
      ...["--backend", "openai", "--base-url", server.url, "--endpoint", "/v1/nope"],
      ...["--num-prompts", "1", "--random-vocab-size", "100"],
    ]);
    assert.equal(bad.code, 1);
    assert.match(bad.out, /readiness request to .*\/v1\/nope failed: HTTP 404/);
  });
});

describe("lmi bench --backend tgi against lmi serve with tgi_compat (TGI-style SSE)", () => {
  let server: ServeProcess;
  before(async () => {
    server = await startServe([testModelDir()], { LMI_LOG_LEVEL: "warn", OPTION_TGI_COMPAT: "true" });
  });
  after(async () => {
    await server?.stop();
  });

  it("counts details.generated_tokens from the last SSE event", async () => {
    const file = join(mkdtempSync(join(tmpdir(), "lmi-bench-tgi-")), "tgi.json");
    const r = await lmiBench([
      ...[
        "--backend",
        "tgi",
        "--endpoint",
        "/invocations",
        "--base-url",
        server.url,
        "--tokenizer",
        testModelDir(),
      ],
      ...[
        "--num-prompts",
        "3",
        "--random-input-len",
        "12",
        "--random-output-len",
        "5",
        "--result-file",
        file,
      ],
    ]);
    assert.equal(r.code, 0, r.out);
    const run: Run = JSON.parse(readFileSync(file, "utf8")).runs[0];
    assert.equal(run.completed, 3);
    for (const q of run.requests) {
      // No ignore_eos on TGI: a request may stop early at EOS, but never runs past max_new_tokens,
      // and every counted token arrived as its own event.
      assert.ok(q.output_tokens >= 1 && q.output_tokens <= 5);
      assert.equal(q.itl_ms.length, q.output_tokens - 1);
    }
  });
});
