// The GPU report writer: the section lands between its markers without touching the rest of the shared
// docs/benchmarks.md, and the table and chart series carry every level of ours and of each peer.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  BEGIN,
  describeModel,
  END,
  renderSection,
  seriesOf,
  spliceSection,
} from "../../scripts/gpu-bench/write-report.ts";

const run = (c: number, tput: number, tpot: number) => ({
  max_concurrency: c,
  num_prompts: 3 * c,
  completed: 3 * c,
  failed: 0,
  output_throughput: tput,
  total_token_throughput: tput * 5,
  median_ttft_ms: 40,
  p99_ttft_ms: 90,
  median_tpot_ms: tpot,
  p99_tpot_ms: tpot * 1.5,
  median_itl_ms: tpot,
  median_e2el_ms: 1000,
  num_length_mismatches: 0,
});
const ours = {
  label: "ours",
  num_warmups: 2,
  dataset: { input_len: 512, output_len: 128 },
  runs: [run(1, 100, 9.5), run(8, 700, 11)],
};
const peers = {
  transformers: "5.17.0",
  torch: "2.11.0",
  gpu: "H100",
  peers: {
    "hf-generate": {
      how: "model.generate",
      levels: [
        {
          concurrency: 8,
          num_requests: 8,
          output_tok_s: 250,
          median_ttft_ms: 60,
          median_tpot_ms: 31.25,
          median_e2el_ms: 4000,
          length_mismatches: 1,
        },
      ],
    },
    "hf-generate-batch": { how: "generate_batch", levels: [], error: "Traceback...\nRuntimeError: boom\n" },
  },
};

test("spliceSection appends once, then replaces only between the markers", () => {
  const base = "# Benchmarks\n\n## Executor\n| a | b |\n";
  const once = spliceSection(base, `${BEGIN}\nv1\n${END}`);
  assert.ok(once.startsWith(base.trimEnd()));
  const twice = spliceSection(`${once}\n## Later section by someone else\n`, `${BEGIN}\nv2\n${END}`);
  assert.ok(twice.includes("v2") && !twice.includes("v1"));
  assert.ok(twice.includes("## Executor\n| a | b |"));
  assert.ok(twice.endsWith("## Later section by someone else\n"));
  assert.equal(twice.split(BEGIN).length, 2);
});

test("the section has a row per level for ours and for each peer that ran, and names peer failures", () => {
  const lmiRun = { ...run(8, 600, 12), num_prompts: 16, completed: 16 };
  const s = renderSection({
    ours,
    oursLmi: { runs: [lmiRun] },
    model: "M",
    peers,
    gpu: "NVIDIA H100 80GB HBM3, 81559 MiB",
    commands: "cmd-a\ncmd-b",
    date: "d",
    chartPath: "x.svg",
  });
  assert.ok(s.startsWith(BEGIN) && s.endsWith(END));
  assert.match(
    s,
    /\| 1 \| ours, `\/v1\/completions` .*\| 3\/3 \| 100 \| 40\.0 \| 90\.0 \| 9\.50 \| 14\.25 \| 1000 \|/,
  );
  assert.match(s, /\| 8 \| hf-generate \| 7\/8 \| 250 \| 60\.0 \| — \| 31\.25 \|/);
  assert.match(s, /hf-generate-batch\*\*: generate_batch\. Failed: `RuntimeError: boom`/);
  assert.match(s, /NVIDIA H100 80GB HBM3/);
  assert.match(s, /cmd-a\ncmd-b/);
  assert.match(s, /!\[throughput vs latency\]\(x\.svg\)/);
  assert.match(s, /3×c requests per level, 2 warm-ups/);
  assert.match(s, /Model: M; random bf16/);
  // The /invocations level sits right under ours at the same concurrency.
  assert.match(
    s,
    /\| 8 \| ours, `\/v1\/completions`[^\n]*\n\| 8 \| ours, `\/invocations` \(LMI jsonlines, text\) \| 16\/16 \| 600 \|/,
  );
});

test("chart series: ours plus each peer with levels", () => {
  const s = seriesOf(ours, peers);
  assert.deepEqual(
    s.map((x) => [x.name, x.points.length]),
    [
      ["ours", 2],
      ["hf-generate (transformers)", 1],
    ],
  );
  assert.deepEqual(s[1].points[0], { label: "c=8", outputTokPerS: 250, values: { tpot: 31.25, ttft: 60 } });
});

test("the model line is read from the served config.json", () => {
  const cfg = {
    architectures: ["LlamaForCausalLM"],
    num_hidden_layers: 32,
    hidden_size: 4096,
    intermediate_size: 14336,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    vocab_size: 128256,
  };
  assert.equal(
    describeModel(cfg),
    "LlamaForCausalLM with 32 layers, hidden 4,096, MLP 14,336, 32 query / 8 KV heads, vocab 128,256",
  );
  assert.equal(describeModel(null), "model config not recorded");
});
