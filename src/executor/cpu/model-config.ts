// Turns a Hugging Face config.json into the normalized ModelSpec the CPU forward pass runs, for the
// families this executor supports. Invariant: every field the forward pass reads is resolved here
// (defaults of each HF config class applied), so nothing downstream reads raw config keys.

export type Family = "llama" | "phi3" | "gpt2" | "gpt_neox" | "mixtral";
export type Activation = "silu" | "gelu" | "gelu_tanh" | "relu";

export interface RopeSpec {
  theta: number;
  /** Leading dims of each head that rotate (partial rotary in NeoX/Phi); rotate-half layout. */
  rotaryDim: number;
  scaling:
    | { type: "llama3"; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMax: number }
    | { type: "linear"; factor: number }
    | null;
}

export interface ModelSpec {
  architecture: string;
  modelType: string;
  family: Family;
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  norm: "rms" | "layer";
  normEps: number;
  act: Activation;
  /** null = learned absolute positions (GPT-2 wpe). */
  rope: RopeSpec | null;
  parallelResidual: boolean;
  /** Attend to at most this many most recent positions (self included); null = full causal. */
  slidingWindow: number | null;
  qkNorm: boolean;
  tieWordEmbeddings: boolean;
  maxPositionEmbeddings: number;
  numExperts: number;
  numExpertsPerTok: number;
  eosTokenIds: number[];
  bosTokenId: number | null;
}

const ARCH_FAMILY: Record<string, Family> = {
  LlamaForCausalLM: "llama",
  MistralForCausalLM: "llama",
  Qwen2ForCausalLM: "llama",
  Qwen3ForCausalLM: "llama",
  Phi3ForCausalLM: "phi3",
  GPT2LMHeadModel: "gpt2",
  GPTNeoXForCausalLM: "gpt_neox",
  MixtralForCausalLM: "mixtral",
};

type Cfg = Record<string, unknown>;

function num(cfg: Cfg, ...keys: string[]): number | undefined {
  for (const k of keys) {
    const v = cfg[k];
    if (typeof v === "number") return v;
  }
  return undefined;
}

function need(cfg: Cfg, ...keys: string[]): number {
  const v = num(cfg, ...keys);
  if (v === undefined) throw new Error(`config.json lacks ${keys.join(" / ")}`);
  return v;
}

function architectureOf(cfg: Cfg): string {
  const archs = cfg.architectures;
  return Array.isArray(archs) && typeof archs[0] === "string" ? archs[0] : "";
}

/** True when this executor can run the model of this config.json (used by rolling_batch=auto). */
export function supportsArchitecture(configJson: unknown): boolean {
  try {
    parseModelSpec(configJson as Cfg);
    return true;
  } catch {
    return false;
  }
}

function parseAct(name: unknown): Activation {
  switch (name) {
    case "silu":
    case "swish":
      return "silu";
    case "gelu":
      return "gelu";
    case "gelu_new":
    case "gelu_pytorch_tanh":
    case "gelu_fast":
      return "gelu_tanh";
    case "relu":
      return "relu";
    default:
      throw new Error(`unsupported hidden_act ${String(name)}`);
  }
}

function parseRope(cfg: Cfg, headDim: number, partial: number): RopeSpec {
  // transformers v5 moves rope settings into rope_parameters; v4 has rope_theta + rope_scaling.
  const params = (cfg.rope_parameters ?? null) as Cfg | null;
  const theta =
    num(cfg, "rope_theta", "rotary_emb_base") ?? (params ? num(params, "rope_theta") : undefined) ?? 10000;
  const sc = (cfg.rope_scaling ?? params ?? null) as Cfg | null;
  const type = sc ? ((sc.rope_type ?? sc.type ?? "default") as string) : "default";
  let scaling: RopeSpec["scaling"] = null;
  if (type === "llama3") {
    scaling = {
      type: "llama3",
      factor: need(sc as Cfg, "factor"),
      lowFreqFactor: need(sc as Cfg, "low_freq_factor"),
      highFreqFactor: need(sc as Cfg, "high_freq_factor"),
      originalMax: need(sc as Cfg, "original_max_position_embeddings"),
    };
  } else if (type === "linear") {
    scaling = { type: "linear", factor: need(sc as Cfg, "factor") };
  } else if (type !== "default") {
    throw new Error(`unsupported rope scaling type ${type}`);
  }
  const rotaryDim = Math.floor(headDim * partial);
  return { theta, rotaryDim: rotaryDim - (rotaryDim % 2), scaling };
}

function eosList(cfg: Cfg): number[] {
  const e = cfg.eos_token_id;
  if (typeof e === "number") return [e];
  if (Array.isArray(e)) return e.filter((x): x is number => typeof x === "number");
  return [];
}

export function parseModelSpec(cfg: Cfg): ModelSpec {
  const architecture = architectureOf(cfg);
  const family = ARCH_FAMILY[architecture];
  if (!family) throw new Error(`unsupported architecture ${architecture || "(none)"}`);
  const modelType = String(cfg.model_type ?? "");
  const base = {
    architecture,
    modelType,
    family,
    eosTokenIds: eosList(cfg),
    bosTokenId: typeof cfg.bos_token_id === "number" ? cfg.bos_token_id : null,
    vocabSize: need(cfg, "vocab_size"),
  };
  if (family === "gpt2") {
    const hiddenSize = need(cfg, "n_embd");
    const numHeads = need(cfg, "n_head");
    return {
      ...base,
      hiddenSize,
      numLayers: need(cfg, "n_layer"),
      numHeads,
      numKvHeads: numHeads,
      headDim: hiddenSize / numHeads,
      intermediateSize: num(cfg, "n_inner") ?? 4 * hiddenSize,
      norm: "layer",
      normEps: num(cfg, "layer_norm_epsilon") ?? 1e-5,
      act: parseAct(cfg.activation_function ?? "gelu_new"),
      rope: null,
      parallelResidual: false,
      slidingWindow: null,
      qkNorm: false,
      tieWordEmbeddings: true,
      maxPositionEmbeddings: need(cfg, "n_positions"),
      numExperts: 0,
      numExpertsPerTok: 0,
    };
  }
  const hiddenSize = need(cfg, "hidden_size");
  const numHeads = need(cfg, "num_attention_heads");
  const headDim = num(cfg, "head_dim") ?? hiddenSize / numHeads;
  const isNeox = family === "gpt_neox";
  const partial = num(cfg, "rotary_pct", "partial_rotary_factor") ?? 1;
  const useSliding = modelType === "qwen2" || modelType === "qwen3" ? cfg.use_sliding_window === true : true;
  const sw = num(cfg, "sliding_window");
  return {
    ...base,
    hiddenSize,
    numLayers: need(cfg, "num_hidden_layers"),
    numHeads,
    numKvHeads: isNeox ? numHeads : (num(cfg, "num_key_value_heads") ?? numHeads),
    headDim,
    intermediateSize: need(cfg, "intermediate_size"),
    norm: isNeox ? "layer" : "rms",
    normEps: need(cfg, isNeox ? "layer_norm_eps" : "rms_norm_eps"),
    act: parseAct(cfg.hidden_act ?? (isNeox ? "gelu" : "silu")),
    rope: parseRope(cfg, headDim, partial),
    parallelResidual: isNeox ? cfg.use_parallel_residual !== false : false,
    slidingWindow: useSliding && sw !== undefined && sw > 0 ? sw : null,
    qkNorm: modelType === "qwen3",
    tieWordEmbeddings: cfg.tie_word_embeddings === true,
    maxPositionEmbeddings: num(cfg, "max_position_embeddings") ?? 2048,
    numExperts: family === "mixtral" ? need(cfg, "num_local_experts") : 0,
    numExpertsPerTok: family === "mixtral" ? (num(cfg, "num_experts_per_tok") ?? 2) : 0,
  };
}
