// Turns a side-by-side GPU run (the $OUT folder of scripts/gpu-bench/run.sh: ours.json from `lmi bench`,
// peers.json from bench/peers/hf_peers.py, gpu.txt, commands.txt, run.log) into the chart
// docs/bench-gpu-sweep.svg and the "Serving sweep" section of docs/benchmarks.md, replaced between its
// markers so the rest of that shared file is never touched.
// Usage: npx tsx scripts/gpu-bench/write-report.ts OUT_DIR [DOCS_DIR (default docs/)] [--note TEXT]
// (--note adds a paragraph under the table: what went wrong in that run, said once, with the data).

import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { CHART_PANELS } from "../../src/bench/bench.ts";
import { type ChartSeries, sweepChartSvg } from "../../src/bench/chart.ts";

export const BEGIN = "<!-- lmi-bench:gpu-sweep:begin -->";
export const END = "<!-- lmi-bench:gpu-sweep:end -->";

interface OursRun {
  max_concurrency: number;
  num_prompts: number;
  completed: number;
  failed: number;
  output_throughput: number;
  total_token_throughput: number;
  median_ttft_ms: number | null;
  p99_ttft_ms: number | null;
  median_tpot_ms: number | null;
  p99_tpot_ms: number | null;
  median_itl_ms: number | null;
  median_e2el_ms: number | null;
  num_length_mismatches: number;
}
interface PeerLevel {
  concurrency: number;
  num_requests: number;
  output_tok_s: number;
  median_ttft_ms: number | null;
  median_tpot_ms: number | null;
  median_e2el_ms: number | null;
  length_mismatches: number;
}
interface PeersDoc {
  transformers: string;
  torch: string;
  gpu: string;
  peers: Record<string, { how: string; levels: PeerLevel[]; error?: string }>;
}

const f = (v: number | null | undefined, d = 1) => (v === null || v === undefined ? "—" : v.toFixed(d));

type OursDoc = { label: string; runs: OursRun[] };

export function seriesOf(
  ours: OursDoc,
  peers: PeersDoc | null,
  oursLmi: OursDoc | null = null,
): ChartSeries[] {
  const of = (d: OursDoc): ChartSeries => ({
    name: d.label,
    points: d.runs.map((r) => ({
      label: `c=${r.max_concurrency}`,
      outputTokPerS: r.output_throughput,
      values: { tpot: r.median_tpot_ms, ttft: r.median_ttft_ms },
    })),
  });
  const s: ChartSeries[] = [of(ours), ...(oursLmi ? [of(oursLmi)] : [])];
  for (const [name, p] of Object.entries(peers?.peers ?? {})) {
    if (p.levels.length === 0) continue;
    s.push({
      name: `${name} (transformers)`,
      points: p.levels.map((l) => ({
        label: `c=${l.concurrency}`,
        outputTokPerS: l.output_tok_s,
        values: { tpot: l.median_tpot_ms, ttft: l.median_ttft_ms },
      })),
    });
  }
  return s;
}

/** One line describing the served model from its config.json (the GPU run copies it to model-config.json). */
export function describeModel(cfg: Record<string, unknown> | null): string {
  if (!cfg) return "model config not recorded";
  const n = (k: string) => (typeof cfg[k] === "number" ? (cfg[k] as number).toLocaleString("en-US") : "?");
  return (
    `${(cfg.architectures as string[] | undefined)?.[0] ?? cfg.model_type} with ${n("num_hidden_layers")} layers, ` +
    `hidden ${n("hidden_size")}, MLP ${n("intermediate_size")}, ${n("num_attention_heads")} query / ` +
    `${n("num_key_value_heads")} KV heads, vocab ${n("vocab_size")}`
  );
}

export function renderSection(o: {
  ours: {
    label: string;
    num_warmups: number;
    dataset: { input_len: number; output_len: number };
    runs: OursRun[];
  };
  model: string;
  /** The extra level measured through /invocations (LMI jsonlines, text prompts), when it ran. */
  oursLmi?: { runs: OursRun[] } | null;
  peers: PeersDoc | null;
  gpu: string;
  commands: string;
  date: string;
  chartPath: string;
  note?: string;
}): string {
  const { input_len: inLen, output_len: outLen } = o.ours.dataset;
  const ks = [...new Set(o.ours.runs.map((r) => r.num_prompts / r.max_concurrency))];
  const perLevel = ks.length === 1 ? `${ks[0]}×c` : o.ours.runs.map((r) => r.num_prompts).join("/");
  const rows: string[] = [];
  const oursRow = (r: OursRun, name: string) =>
    `| ${r.max_concurrency} | ${name} | ${r.completed}/${r.num_prompts} | ${f(r.output_throughput, 0)} | ${f(r.median_ttft_ms)} | ${f(r.p99_ttft_ms)} | ${f(r.median_tpot_ms, 2)} | ${f(r.p99_tpot_ms, 2)} | ${f(r.median_e2el_ms, 0)} |`;
  for (const r of o.ours.runs) {
    rows.push(oursRow(r, "ours, `/v1/completions` (SSE, token ids)"));
    for (const x of o.oursLmi?.runs ?? []) {
      if (x.max_concurrency === r.max_concurrency)
        rows.push(oursRow(x, "ours, `/invocations` (LMI jsonlines, text)"));
    }
    for (const [name, p] of Object.entries(o.peers?.peers ?? {})) {
      const l = p.levels.find((x) => x.concurrency === r.max_concurrency);
      if (!l) continue;
      rows.push(
        `| ${l.concurrency} | ${name} | ${l.num_requests - l.length_mismatches}/${l.num_requests} | ${f(l.output_tok_s, 0)} | ${f(l.median_ttft_ms)} | — | ${f(l.median_tpot_ms, 2)} | — | ${f(l.median_e2el_ms, 0)} |`,
      );
    }
  }
  const peerNotes = Object.entries(o.peers?.peers ?? {}).map(
    ([name, p]) =>
      `- **${name}**: ${p.how}.${p.error ? ` Failed: \`${p.error.trim().split("\n").pop()}\`` : ""}`,
  );
  return [
    BEGIN,
    "## Serving sweep: `lmi bench` against our server, transformers as same-machine peers",
    "",
    `Run ${o.date} on one ${o.gpu.trim() || "GPU (name not recorded)"} in a single call of \`scripts/gpu-bench/run.sh\`` +
      " (our server first, stopped before the peers start, so each side had the GPU to itself)." +
      (o.peers
        ? ` transformers ${o.peers.transformers}, torch ${o.peers.torch}.`
        : " No peer results came back from this run (see below)."),
    `Model: ${o.model}; random bf16 weights on both sides.`,
    `Workload: random token-id prompts of ${inLen} tokens, exactly ${outLen} output tokens (ignore_eos), greedy.`,
    `Ours: a closed loop of c concurrent streaming requests to \`/v1/completions\` (\`--max-concurrency c\`, ${perLevel} requests per level, ${o.ours.num_warmups} warm-ups).`,
    "Peers: c prompts submitted together (one static batch for `generate`; one `generate_batch` call), which",
    "is the same load as c concurrent requests of equal length. Definitions as in [bench.md](bench.md):",
    "TPOT = (E2E − TTFT)/(tokens − 1); output tok/s = generated tokens / wall time.",
    "",
    "| c | system | ok | output tok/s | median TTFT ms | p99 TTFT ms | median TPOT ms | p99 TPOT ms | median E2E ms |",
    "|---|---|---|---|---|---|---|---|---|",
    ...rows,
    "",
    `![throughput vs latency](${o.chartPath})`,
    "",
    ...(peerNotes.length ? [...peerNotes, ""] : []),
    ...(o.note ? [o.note, ""] : []),
    "Commands (as run; `$OUT` is the run's output folder):",
    "",
    "```",
    "bash scripts/gpu-bench/prepare.sh                   # CPU machine: tmp/gpu-snap/ = HEAD + bundle + Node, carried",
    "cd tmp/gpu-snap && bash scripts/gpu-bench/run.sh   # GPU machine, one call; it runs:",
    ...o.commands.trim().split("\n"),
    "npx tsx scripts/gpu-bench/write-report.ts $OUT   # back here: this section and the chart",
    "```",
    END,
  ].join("\n");
}

/** Replaces the section between the markers, or appends it; the rest of the file is kept byte for byte. */
export function spliceSection(doc: string, section: string): string {
  const a = doc.indexOf(BEGIN);
  const b = doc.indexOf(END);
  if (a >= 0 && b > a) return doc.slice(0, a) + section + doc.slice(b + END.length);
  return `${doc.replace(/\n*$/, "")}${doc.trim() ? "\n\n" : ""}${section}\n`;
}

function main(outDir: string, docsDir: string, note: string | undefined): void {
  const read = (name: string) =>
    existsSync(join(outDir, name)) ? readFileSync(join(outDir, name), "utf8") : "";
  if (!read("ours.json")) throw new Error(`${outDir}/ours.json is missing: the server sweep did not finish`);
  const ours = JSON.parse(read("ours.json"));
  const peers: PeersDoc | null = read("peers.json") ? JSON.parse(read("peers.json")) : null;
  const oursLmi = read("ours-lmi.json") ? JSON.parse(read("ours-lmi.json")) : null;
  const chartRel = "bench-gpu-sweep.svg";
  const svg = sweepChartSvg(
    `${ours.dataset.input_len}/${ours.dataset.output_len} tokens`,
    CHART_PANELS,
    seriesOf(ours, peers, oursLmi),
  );
  writeFileSync(join(docsDir, chartRel), svg);
  const docPath = join(docsDir, "benchmarks.md");
  const existing = existsSync(docPath) ? readFileSync(docPath, "utf8") : "# Benchmarks\n";
  const section = renderSection({
    ours,
    peers,
    gpu: read("gpu.txt") || peers?.gpu || "",
    oursLmi,
    model: describeModel(read("model-config.json") ? JSON.parse(read("model-config.json")) : null),
    commands: read("commands.txt"),
    date: ours.date.slice(0, 16).replace("T", " ") + " UTC",
    chartPath: chartRel,
    note,
  });
  writeFileSync(docPath, spliceSection(existing, section));
  console.log(`wrote ${join(docsDir, chartRel)} and the sweep section of ${docPath}`);
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  if (!process.argv[2] || process.argv[2].startsWith("--")) {
    console.error("usage: npx tsx scripts/gpu-bench/write-report.ts OUT_DIR [DOCS_DIR]");
    process.exit(2);
  }
  const args = process.argv.slice(2);
  const k = args.indexOf("--note");
  const note = k >= 0 ? args.splice(k, 2)[1] : undefined;
  main(args[0], args[1] ?? resolve(import.meta.dirname, "..", "..", "docs"), note);
}
