// Renders benchmark outcomes: the console table (laid out like `vllm bench serve`'s, plus p-values
// the user asked for) and the JSON result document. The JSON keeps every aggregate and, per request,
// the raw measurements so any other statistic can be recomputed later.

import type { BenchMetrics, RequestResult } from "./metrics.ts";
import type { Summary } from "./stats.ts";

const W = 50;
const line = (label: string, v: string) => `${label.padEnd(40)}${v.padStart(W - 40)}`;
const head = (title: string, fill = "-") => {
  const side = Math.max(0, W - title.length - 2);
  return `${fill.repeat(Math.floor(side / 2))} ${title} ${fill.repeat(Math.ceil(side / 2))}`;
};
const num = (v: number | null, digits = 2) => (v === null ? "n/a" : v.toFixed(digits));

function summaryLines(name: string, title: string, s: Summary): string[] {
  return [
    head(title),
    line(`Mean ${name} (ms):`, num(s.mean)),
    line(`Median ${name} (ms):`, num(s.median)),
    ...Object.entries(s.percentiles).map(([p, v]) => line(`P${p} ${name} (ms):`, num(v))),
  ];
}

export function formatTable(title: string, m: BenchMetrics): string {
  const rows = [
    head(title, "="),
    line("Successful requests:", String(m.completed)),
    line("Failed requests:", String(m.failed)),
    line("Benchmark duration (s):", num(m.durationS)),
    line("Total input tokens:", String(m.totalInputTokens)),
    line("Total generated tokens:", String(m.totalOutputTokens)),
    line("Request throughput (req/s):", num(m.requestThroughput)),
    ...(m.requestGoodput !== null ? [line("Request goodput (req/s):", num(m.requestGoodput))] : []),
    line("Output token throughput (tok/s):", num(m.outputThroughput)),
    line("Peak output tok/s (1-s buckets):", num(m.maxOutputTokensPerS)),
    line("Peak concurrent requests (1-s buckets):", String(m.maxConcurrentRequests)),
    line("Total token throughput (tok/s):", num(m.totalTokenThroughput)),
    ...summaryLines("TTFT", "Time to First Token", m.ttftMs),
    ...summaryLines("TPOT", "Time per Output Token (excl. 1st token)", m.tpotMs),
    ...summaryLines("ITL", "Inter-token Latency", m.itlMs),
    ...summaryLines("E2EL", "End-to-end Latency", m.e2elMs),
    "=".repeat(W),
  ];
  return rows.join("\n");
}

/** Per-request record in the result file (times in ms, start relative to the run's first send). */
export function requestRecords(results: readonly RequestResult[]) {
  const t0 = results.reduce((a, r) => Math.min(a, r.startMs), results.length ? Number.POSITIVE_INFINITY : 0);
  return results.map((r) => ({
    success: r.success,
    ...(r.error ? { error: r.error } : {}),
    prompt_len: r.promptLen,
    output_tokens: r.outputTokens,
    start_ms: r.startMs - t0,
    ttft_ms: r.ttftMs,
    latency_ms: r.latencyMs,
    itl_ms: r.itlMs,
  }));
}
