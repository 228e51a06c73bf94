import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { createForward, loadModel } from "./model.ts";
import { parseModelSpec, supportsArchitecture } from "./model-config.ts";
import { ropeInvFreq } from "./ops.ts";
import { writeRandomModel } from "./testing/random-model.ts";

const base = {
  model_type: "llama",
  vocab_size: 10,
  hidden_size: 8,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  intermediate_size: 16,
  rms_norm_eps: 1e-6,
};

test("supportsArchitecture accepts the eight families and refuses others by name", () => {
  for (const a of [
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen3ForCausalLM",
    "Phi3ForCausalLM",
    "MixtralForCausalLM",
  ]) {
    assert.ok(supportsArchitecture({ ...base, architectures: [a], num_local_experts: 4 }), a);
  }
  assert.ok(
    supportsArchitecture({
      architectures: ["GPT2LMHeadModel"],
      vocab_size: 5,
      n_embd: 8,
      n_head: 2,
      n_layer: 1,
      n_positions: 16,
    }),
  );
  assert.equal(supportsArchitecture({ ...base, architectures: ["BloomForCausalLM"] }), false);
  assert.equal(
    supportsArchitecture({ ...base, architectures: ["LlamaForCausalLM"], hidden_act: "quick_gelu_x" }),
    false,
  );
  assert.throws(
    () =>
      parseModelSpec({
        ...base,
        architectures: ["LlamaForCausalLM"],
        rope_scaling: { rope_type: "yarn", factor: 2 },
      }),
    /yarn/,
  );
});

test("family defaults: Qwen's sliding window needs use_sliding_window, Mistral's applies, NeoX is partial rotary", () => {
  const q = parseModelSpec({
    ...base,
    architectures: ["Qwen2ForCausalLM"],
    model_type: "qwen2",
    sliding_window: 4,
  });
  assert.equal(q.slidingWindow, null);
  const q2 = parseModelSpec({
    ...base,
    architectures: ["Qwen2ForCausalLM"],
    model_type: "qwen2",
    sliding_window: 4,
    use_sliding_window: true,
  });
  assert.equal(q2.slidingWindow, 4);
  const m = parseModelSpec({
    ...base,
    architectures: ["MistralForCausalLM"],
    model_type: "mistral",
    sliding_window: 4,
  });
  assert.equal(m.slidingWindow, 4);
  const n = parseModelSpec({
    architectures: ["GPTNeoXForCausalLM"],
    model_type: "gpt_neox",
    vocab_size: 10,
    hidden_size: 64,
    num_hidden_layers: 1,
    num_attention_heads: 4,
    intermediate_size: 16,
    layer_norm_eps: 1e-5,
    rotary_pct: 0.25,
  });
  assert.equal(n.rope?.rotaryDim, 4);
  assert.equal(n.norm, "layer");
  assert.equal(n.parallelResidual, true);
  assert.equal(n.act, "gelu");
});

test("llama3 rope scaling keeps high frequencies and divides low ones by the factor", () => {
  const spec = parseModelSpec({
    ...base,
    architectures: ["LlamaForCausalLM"],
    hidden_size: 256,
    num_attention_heads: 2,
    rope_theta: 500000,
    rope_scaling: {
      rope_type: "llama3",
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 64,
    },
  });
  const plain = ropeInvFreq({ ...spec.rope!, scaling: null });
  const scaled = ropeInvFreq(spec.rope!);
  assert.equal(scaled[0], plain[0]); // wavelength 2π < 64/4: untouched
  const last = plain.length - 1; // wavelength far above 64: divided by 8
  assert.ok(Math.abs(scaled[last] - plain[last] / 8) < 1e-12);
  const mid = plain.findIndex((f) => (2 * Math.PI) / f > 16 && (2 * Math.PI) / f < 64);
  assert.ok(scaled[mid] < plain[mid] && scaled[mid] > plain[mid] / 8, "smooth band interpolates");
});

test("dtype emulation: an fp32 checkpoint loaded as bf16/fp16 computes what the half checkpoint computes", () => {
  const tokens = [3, 9, 27, 81 % 97, 50];
  const logitsOf = (dir: string, dtype?: "fp32" | "bf16" | "fp16") => {
    const m = loadModel(dir, { dtype });
    const fwd = createForward(m, 4, 16, 0);
    return fwd.forward([{ tokens, startPos: 0, blockTable: [0], logits: "last", hidden: false }])[0]
      .logits[0];
  };
  const mk = (dtype: "F32" | "BF16" | "F16") =>
    writeRandomModel(mkdtempSync(join(tmpdir(), "dt-")), { family: "llama", dtype, seed: 77 });
  const f32 = mk("F32");
  assert.deepEqual(Array.from(logitsOf(f32, "bf16")), Array.from(logitsOf(mk("BF16"))));
  assert.deepEqual(Array.from(logitsOf(f32, "fp16")), Array.from(logitsOf(mk("F16"))));
  const full = logitsOf(f32);
  const half = logitsOf(f32, "bf16");
  assert.ok(
    full.some((v, i) => v !== half[i]),
    "bf16 rounding changes the logits",
  );
  assert.equal(loadModel(mk("BF16")).dtype, "bf16");
});
