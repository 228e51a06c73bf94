// `lmi bench` end to end: builds the prompts, runs one benchmark or a concurrency sweep, prints the
// tables, and writes the JSON result (vLLM's key names: mean_ttft_ms, p99_itl_ms, output_throughput...)
// and, for a sweep, the SVG chart. The same seed gives the same prompts and arrivals on every run.

import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { type ChartSeries, sweepChartSvg } from "./chart.ts";
import { type BenchRequest, jsonlDataset, type PromptTokenizer, randomDataset } from "./datasets.ts";
import type { BenchMetrics } from "./metrics.ts";
import type { BenchConfig } from "./options.ts";
import { loadPromptTokenizer } from "./prompt-tokenizer.ts";
import { Rng } from "./random.ts";
import { formatTable, requestRecords } from "./report.ts";
import { type RunOutcome, runBenchmark } from "./runner.ts";
import type { Summary } from "./stats.ts";

export const COUNTING_RULES: Record<string, string> = {
  lmi: "details.generated_tokens of the last jsonlines line (details:true is sent), else one token per line with a token",
  openai:
    "usage.completion_tokens (stream_options.include_usage), else one token per chunk with non-empty text",
  "openai-chat":
    "usage.completion_tokens (stream_options.include_usage), else one token per chunk with non-empty delta.content",
  tgi: "details.generated_tokens of the last event, else one token per event with a token",
};

export interface LevelResult {
  maxConcurrency: number | null;
  numPrompts: number;
  outcome: RunOutcome;
}

export function buildRequests(c: BenchConfig, n: number, tokenizer: PromptTokenizer | null): BenchRequest[] {
  if (c.datasetName === "jsonl") {
    return jsonlDataset({
      path: c.datasetPath as string,
      numPrompts: n,
      defaultOutputLen: c.jsonlOutputLen ?? null,
      tokenizer,
    });
  }
  return randomDataset(
    {
      numPrompts: n,
      inputLen: c.randomInputLen,
      outputLen: c.randomOutputLen,
      rangeRatio: c.randomRangeRatio,
      promptKind: c.randomPromptKind,
      tokenizer,
      vocabSize: c.randomVocabSize ?? null,
    },
    new Rng(c.seed),
  );
}

function flat(name: string, s: Summary): Record<string, number | null> {
  const o: Record<string, number | null> = {
    [`mean_${name}_ms`]: s.mean,
    [`median_${name}_ms`]: s.median,
    [`std_${name}_ms`]: s.std,
  };
  for (const [p, v] of Object.entries(s.percentiles)) o[`p${p}_${name}_ms`] = v;
  return o;
}

/** The aggregate metrics under vLLM's result-file key names. */
export function vllmStyleMetrics(m: BenchMetrics): Record<string, number | null> {
  return {
    completed: m.completed,
    failed: m.failed,
    duration: m.durationS,
    total_input_tokens: m.totalInputTokens,
    total_output_tokens: m.totalOutputTokens,
    request_throughput: m.requestThroughput,
    request_goodput: m.requestGoodput,
    output_throughput: m.outputThroughput,
    total_token_throughput: m.totalTokenThroughput,
    max_output_tokens_per_s: m.maxOutputTokensPerS,
    max_concurrent_requests: m.maxConcurrentRequests,
    ...flat("ttft", m.ttftMs),
    ...flat("tpot", m.tpotMs),
    ...flat("itl", m.itlMs),
    ...flat("e2el", m.e2elMs),
  };
}

export function chartSeries(name: string, levels: readonly LevelResult[]): ChartSeries {
  return {
    name,
    points: levels.map((l) => ({
      label: `c=${l.maxConcurrency ?? "∞"}`,
      outputTokPerS: l.outcome.metrics.outputThroughput,
      values: {
        tpot: l.outcome.metrics.tpotMs.median,
        ttft: l.outcome.metrics.ttftMs.median,
        e2el: l.outcome.metrics.e2elMs.median,
      },
    })),
  };
}

export const CHART_PANELS = [
  { key: "tpot", title: "median TPOT" },
  { key: "ttft", title: "median TTFT" },
];

export async function runBench(c: BenchConfig, log: (s: string) => void = console.log) {
  const tokenizer = c.tokenizer !== undefined ? loadPromptTokenizer(c.tokenizer) : null;
  const levels: LevelResult[] = [];
  const plan = c.sweepConcurrency
    ? c.sweepConcurrency.map((k) => ({
        conc: k as number | null,
        n: c.promptsPerConcurrency !== undefined ? c.promptsPerConcurrency * k : c.numPrompts,
      }))
    : [{ conc: c.maxConcurrency ?? null, n: c.numPrompts }];
  for (const [i, { conc, n }] of plan.entries()) {
    const requests = buildRequests(c, n, tokenizer);
    const outcome = await runBenchmark(
      {
        url: c.url,
        backend: c.backend,
        model: c.model,
        requests,
        ratePerS: c.requestRate,
        burstiness: c.burstiness,
        maxConcurrency: conc,
        numWarmups: c.numWarmups,
        ignoreEos: c.ignoreEos ?? false,
        timeoutMs: c.requestTimeout * 1000,
        percentiles: c.metricPercentiles,
        slo: c.slo,
        extraBody: c.extraBody,
        progress: c.progress,
        skipReadiness: i > 0,
      },
      new Rng(c.seed + 1),
    );
    levels.push({ maxConcurrency: conc, numPrompts: n, outcome });
    const title = `Serving Benchmark Result${conc !== null ? ` (max concurrency ${conc})` : ""}`;
    log(formatTable(title, outcome.metrics));
    if (outcome.errors.length)
      log(`failures (first ${outcome.errors.length} kinds):\n  ${outcome.errors.join("\n  ")}`);
    if (outcome.numLengthMismatches > 0) {
      log(
        `warning: ${outcome.numLengthMismatches} requests returned a different length than asked (ignore_eos)`,
      );
    }
    // Written after every level, so a sweep cut short (a time limit on a shared GPU) keeps what it measured.
    if (c.resultFile) writeFileQuiet(c.resultFile, `${JSON.stringify(resultDocument(c, levels), null, 1)}\n`);
  }
  const doc = resultDocument(c, levels);
  if (c.resultFile) writeOut(c.resultFile, `${JSON.stringify(doc, null, 1)}\n`, log, "results");
  if (c.sweepConcurrency) {
    const path =
      c.chart ?? (c.resultFile ? c.resultFile.replace(/\.json$/i, "") + ".svg" : "lmi-bench-sweep.svg");
    const svg = sweepChartSvg(`${c.randomInputLen}/${c.randomOutputLen}`, CHART_PANELS, [
      chartSeries(c.label ?? c.backend.name, levels),
    ]);
    writeOut(path, svg, log, "chart");
  }
  return { doc, levels };
}

function writeFileQuiet(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
}

function writeOut(path: string, text: string, log: (s: string) => void, what: string): void {
  writeFileQuiet(path, text);
  log(`wrote ${what} to ${path}`);
}

export function resultDocument(c: BenchConfig, levels: readonly LevelResult[]) {
  return {
    tool: "lmi bench",
    date: new Date().toISOString(),
    label: c.label ?? c.backend.name,
    backend: c.backend.name,
    url: c.url,
    model: c.model ?? null,
    token_counting: COUNTING_RULES[c.backend.name],
    dataset:
      c.datasetName === "jsonl"
        ? { name: "jsonl", path: c.datasetPath }
        : {
            name: "random",
            input_len: c.randomInputLen,
            output_len: c.randomOutputLen,
            range_ratio: c.randomRangeRatio,
            prompt_kind: c.randomPromptKind,
          },
    request_rate: Number.isFinite(c.requestRate) ? c.requestRate : "inf",
    burstiness: c.burstiness,
    ignore_eos: c.ignoreEos ?? false,
    num_warmups: c.numWarmups,
    seed: c.seed,
    goodput_slo_ms: c.slo,
    runs: levels.map((l) => ({
      max_concurrency: l.maxConcurrency,
      num_prompts: l.numPrompts,
      ...vllmStyleMetrics(l.outcome.metrics),
      num_length_mismatches: l.outcome.numLengthMismatches,
      errors: l.outcome.errors,
      requests: requestRecords(l.outcome.results),
    })),
  };
}
