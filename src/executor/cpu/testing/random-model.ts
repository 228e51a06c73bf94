// Test helper: writes a small random-weight model directory (config.json + model.safetensors) in the
// real Hugging Face layout of each supported family, so loader and forward tests run without fixtures.
// Weights come from a seeded generator: the same arguments always give the same bytes.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type TensorToWrite, writeSafetensors } from "../../safetensors-writer.ts";

export type RandomFamily = "llama" | "mistral" | "qwen2" | "qwen3" | "phi3" | "gpt2" | "gpt_neox" | "mixtral";

export interface RandomModelOptions {
  family: RandomFamily;
  vocab?: number;
  hidden?: number;
  layers?: number;
  heads?: number;
  kvHeads?: number;
  intermediate?: number;
  dtype?: "F32" | "F16" | "BF16";
  tie?: boolean;
  slidingWindow?: number;
  seed?: number;
}

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32 - 0.5;
  };
}

export function writeRandomModel(dir: string, o: RandomModelOptions): string {
  mkdirSync(dir, { recursive: true });
  const V = o.vocab ?? 97;
  const H = o.hidden ?? 32;
  const NL = o.layers ?? 2;
  const NH = o.heads ?? 4;
  const NKV = o.family === "gpt2" || o.family === "gpt_neox" ? NH : (o.kvHeads ?? 2);
  const hd = H / NH;
  const I = o.intermediate ?? 48;
  const dtype = o.dtype ?? "F32";
  const r = rng(o.seed ?? 1234);
  const tensors: Record<string, TensorToWrite> = {};
  const t = (name: string, shape: number[], scale = 0.2, offset = 0) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = offset + r() * 2 * scale;
    tensors[name] = { dtype, shape, data };
  };
  const norm = (p: string, bias: boolean) => {
    t(`${p}.weight`, [H], 0.1, 1);
    if (bias) t(`${p}.bias`, [H], 0.05);
  };
  const f = o.family;
  let config: Record<string, unknown>;
  if (f === "gpt2") {
    config = {
      architectures: ["GPT2LMHeadModel"],
      model_type: "gpt2",
      vocab_size: V,
      n_embd: H,
      n_layer: NL,
      n_head: NH,
      n_positions: 128,
      n_inner: null,
      activation_function: "gelu_new",
      layer_norm_epsilon: 1e-5,
      bos_token_id: 0,
      eos_token_id: 1,
    };
    t("transformer.wte.weight", [V, H], 0.5);
    t("transformer.wpe.weight", [128, H], 0.1);
    for (let l = 0; l < NL; l++) {
      const p = `transformer.h.${l}`;
      norm(`${p}.ln_1`, true);
      norm(`${p}.ln_2`, true);
      t(`${p}.attn.c_attn.weight`, [H, 3 * H]);
      t(`${p}.attn.c_attn.bias`, [3 * H], 0.05);
      t(`${p}.attn.c_proj.weight`, [H, H]);
      t(`${p}.attn.c_proj.bias`, [H], 0.05);
      t(`${p}.mlp.c_fc.weight`, [H, 4 * H]);
      t(`${p}.mlp.c_fc.bias`, [4 * H], 0.05);
      t(`${p}.mlp.c_proj.weight`, [4 * H, H]);
      t(`${p}.mlp.c_proj.bias`, [H], 0.05);
    }
    norm("transformer.ln_f", true);
  } else if (f === "gpt_neox") {
    config = {
      architectures: ["GPTNeoXForCausalLM"],
      model_type: "gpt_neox",
      vocab_size: V,
      hidden_size: H,
      num_hidden_layers: NL,
      num_attention_heads: NH,
      intermediate_size: I,
      rotary_pct: 0.5,
      rotary_emb_base: 10000,
      max_position_embeddings: 128,
      layer_norm_eps: 1e-5,
      hidden_act: "gelu",
      use_parallel_residual: true,
      tie_word_embeddings: false,
      bos_token_id: 0,
      eos_token_id: 1,
    };
    t("gpt_neox.embed_in.weight", [V, H], 0.5);
    for (let l = 0; l < NL; l++) {
      const p = `gpt_neox.layers.${l}`;
      norm(`${p}.input_layernorm`, true);
      norm(`${p}.post_attention_layernorm`, true);
      t(`${p}.attention.query_key_value.weight`, [3 * H, H]);
      t(`${p}.attention.query_key_value.bias`, [3 * H], 0.05);
      t(`${p}.attention.dense.weight`, [H, H]);
      t(`${p}.attention.dense.bias`, [H], 0.05);
      t(`${p}.mlp.dense_h_to_4h.weight`, [I, H]);
      t(`${p}.mlp.dense_h_to_4h.bias`, [I], 0.05);
      t(`${p}.mlp.dense_4h_to_h.weight`, [H, I]);
      t(`${p}.mlp.dense_4h_to_h.bias`, [H], 0.05);
    }
    norm("gpt_neox.final_layer_norm", true);
    t("embed_out.weight", [V, H], 0.5);
  } else {
    const arch = {
      llama: "LlamaForCausalLM",
      mistral: "MistralForCausalLM",
      qwen2: "Qwen2ForCausalLM",
      qwen3: "Qwen3ForCausalLM",
      phi3: "Phi3ForCausalLM",
      mixtral: "MixtralForCausalLM",
    }[f];
    const tie = o.tie ?? false;
    config = {
      architectures: [arch],
      model_type: f,
      vocab_size: V,
      hidden_size: H,
      num_hidden_layers: NL,
      num_attention_heads: NH,
      num_key_value_heads: NKV,
      intermediate_size: I,
      rms_norm_eps: 1e-6,
      rope_theta: 10000,
      max_position_embeddings: 256,
      hidden_act: "silu",
      tie_word_embeddings: tie,
      bos_token_id: 0,
      eos_token_id: 1,
    };
    if (o.slidingWindow) config.sliding_window = o.slidingWindow;
    if (f === "qwen3") config.head_dim = hd;
    if (f === "mixtral") Object.assign(config, { num_local_experts: 4, num_experts_per_tok: 2 });
    t("model.embed_tokens.weight", [V, H], 0.5);
    for (let l = 0; l < NL; l++) {
      const p = `model.layers.${l}`;
      norm(`${p}.input_layernorm`, false);
      norm(`${p}.post_attention_layernorm`, false);
      const a = `${p}.self_attn`;
      if (f === "phi3") t(`${a}.qkv_proj.weight`, [(NH + 2 * NKV) * hd, H]);
      else {
        t(`${a}.q_proj.weight`, [NH * hd, H]);
        t(`${a}.k_proj.weight`, [NKV * hd, H]);
        t(`${a}.v_proj.weight`, [NKV * hd, H]);
      }
      if (f === "qwen2") {
        t(`${a}.q_proj.bias`, [NH * hd], 0.1);
        t(`${a}.k_proj.bias`, [NKV * hd], 0.1);
        t(`${a}.v_proj.bias`, [NKV * hd], 0.1);
      }
      if (f === "qwen3") {
        t(`${a}.q_norm.weight`, [hd], 0.1, 1);
        t(`${a}.k_norm.weight`, [hd], 0.1, 1);
      }
      t(`${a}.o_proj.weight`, [H, NH * hd]);
      if (f === "phi3") {
        t(`${p}.mlp.gate_up_proj.weight`, [2 * I, H]);
        t(`${p}.mlp.down_proj.weight`, [H, I]);
      } else if (f === "mixtral") {
        t(`${p}.block_sparse_moe.gate.weight`, [4, H], 0.5);
        for (let e = 0; e < 4; e++) {
          t(`${p}.block_sparse_moe.experts.${e}.w1.weight`, [I, H]);
          t(`${p}.block_sparse_moe.experts.${e}.w2.weight`, [H, I]);
          t(`${p}.block_sparse_moe.experts.${e}.w3.weight`, [I, H]);
        }
      } else {
        t(`${p}.mlp.gate_proj.weight`, [I, H]);
        t(`${p}.mlp.up_proj.weight`, [I, H]);
        t(`${p}.mlp.down_proj.weight`, [H, I]);
      }
    }
    norm("model.norm", false);
    if (!tie) t("lm_head.weight", [V, H], 0.5);
  }
  config.torch_dtype = { F32: "float32", F16: "float16", BF16: "bfloat16" }[dtype];
  writeFileSync(join(dir, "config.json"), JSON.stringify(config, null, 2));
  writeFileSync(join(dir, "generation_config.json"), JSON.stringify({ bos_token_id: 0, eos_token_id: 1 }));
  writeSafetensors(join(dir, "model.safetensors"), tensors, { format: "pt" });
  return dir;
}
