// Loads a model's safetensors into the canonical per-layer layout the forward pass expects, whatever
// the family's checkpoint layout: q/k/v fused into one [q; k; v] matrix, gate/up fused into [gate; up],
// GPT-2 Conv1D weights transposed to [out, in], NeoX's per-head packed qkv unpacked. Matmul operands live
// in the backend's memory; weights may be rounded to fp16/bf16 to emulate that dtype's numerics.
import type { TensorInfo } from "../safetensors.ts";
import { bf16ToF32, f16ToF32, readModelTensorIndex, readTensorF32 } from "../safetensors.ts";
import { f32ToBf16Bits, f32ToF16Bits } from "../safetensors-writer.ts";
import {
  ALLOC_SLACK_FLOATS,
  type BackendName,
  createBackend,
  type MathBackend,
} from "./kernels/math-backend.ts";
import type { ModelSpec } from "./model-config.ts";

export type WeightDtype = "fp32" | "fp16" | "bf16";

export interface Linear {
  /** [out, in] row-major fp32; empty when w16 holds the weights instead. */
  w: Float32Array;
  /** The same weights as bf16 bits (WASM backend with dtype bf16: half the memory traffic), or null. */
  w16: Uint16Array | null;
  b: Float32Array | null;
  out: number;
  in: number;
}

export interface Norm {
  w: Float32Array;
  b: Float32Array | null;
}

export type Mlp =
  | { kind: "gated"; gateUp: Linear; down: Linear }
  | { kind: "plain"; fc: Linear; proj: Linear }
  | { kind: "moe"; router: Linear; experts: Array<{ gateUp: Linear; down: Linear }> };

export interface LayerWeights {
  ln1: Norm;
  ln2: Norm;
  /** Rows: numHeads*headDim query rows, then numKvHeads*headDim key rows, then value rows. */
  qkv: Linear;
  o: Linear;
  qNorm: Float32Array | null;
  kNorm: Float32Array | null;
  mlp: Mlp;
}

export interface ModelWeights {
  embed: Float32Array; // [vocab, hidden]
  posEmbed: Float32Array | null; // GPT-2 wpe [positions, hidden]
  layers: LayerWeights[];
  finalNorm: Norm;
  lmHead: Linear;
  backend: MathBackend;
}

/** Rounds values in place to the nearest fp16/bf16 value, so fp32 math sees that dtype's weights. */
function roundTo(dtype: WeightDtype, a: Float32Array): void {
  if (dtype === "fp32") return;
  const u = new Uint16Array(a.length);
  const conv = dtype === "bf16" ? f32ToBf16Bits : f32ToF16Bits;
  for (let i = 0; i < a.length; i++) u[i] = conv(a[i]);
  (dtype === "bf16" ? bf16ToF32 : f16ToF32)(u, a);
}

const EMPTY = new Float32Array(0);

class Reader {
  constructor(
    private readonly index: Map<string, TensorInfo>,
    private readonly backend: MathBackend,
    private readonly dtype: WeightDtype,
    private readonly packBf16: boolean,
  ) {}
  /** Matmul weights: bf16 bits when packing (values are already bf16-exact), else fp32. */
  weight(...parts: Float32Array[]): { w: Float32Array; w16: Uint16Array | null } {
    if (!this.packBf16 || !this.backend.allocU16) return { w: this.place(...parts), w16: null };
    const total = parts.reduce((s, p) => s + p.length, 0);
    const w16 = this.backend.allocU16(total);
    let off = 0;
    for (const p of parts) for (let i = 0; i < p.length; i++) w16[off++] = f32ToBf16Bits(p[i]);
    return { w: EMPTY, w16 };
  }
  get packs(): boolean {
    return this.packBf16 && this.backend.allocU16 !== undefined;
  }
  has(name: string): boolean {
    return this.index.has(name);
  }
  raw(name: string): Float32Array {
    const info = this.index.get(name);
    if (!info) throw new Error(`weight ${name} missing from the checkpoint`);
    const a = readTensorF32(info);
    roundTo(this.dtype, a);
    return a;
  }
  shape(name: string): number[] {
    const info = this.index.get(name);
    if (!info) throw new Error(`weight ${name} missing from the checkpoint`);
    return info.shape;
  }
  /** Copies host arrays, concatenated, into one backend array. */
  place(...parts: Float32Array[]): Float32Array {
    const total = parts.reduce((s, p) => s + p.length, 0);
    const dst = this.backend.alloc(total);
    let off = 0;
    for (const p of parts) {
      dst.set(p, off);
      off += p.length;
    }
    return dst;
  }
  opt(name: string): Float32Array | null {
    return this.has(name) ? this.raw(name) : null;
  }
  linear(names: string[], bias: "auto" | "none" = "auto"): Linear {
    const ws = names.map((n) => this.raw(`${n}.weight`));
    const ins = this.shape(`${names[0]}.weight`)[1];
    const out = ws.reduce((s, w) => s + w.length / ins, 0);
    const hasBias = bias === "auto" && this.has(`${names[0]}.bias`);
    return {
      ...this.weight(...ws),
      b: hasBias ? Float32Array.from(names.flatMap((n) => Array.from(this.raw(`${n}.bias`)))) : null,
      out,
      in: ins,
    };
  }
  norm(prefix: string): Norm {
    return { w: this.raw(`${prefix}.weight`), b: this.opt(`${prefix}.bias`) };
  }
}

function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = a[r * cols + c];
  return t;
}

function conv1d(r: Reader, name: string): Linear {
  const [ins, out] = r.shape(`${name}.weight`);
  return {
    ...r.weight(transpose(r.raw(`${name}.weight`), ins, out)),
    b: r.raw(`${name}.bias`),
    out,
    in: ins,
  };
}

/** NeoX packs query_key_value rows as [head][q|k|v][headDim]; regroup into [q all heads; k; v]. */
function unpackNeoxQkv(a: Float32Array, heads: number, headDim: number, width: number): Float32Array {
  const out = new Float32Array(a.length);
  const rowsPer = heads * headDim;
  for (let h = 0; h < heads; h++) {
    for (let part = 0; part < 3; part++) {
      for (let d = 0; d < headDim; d++) {
        const src = ((h * 3 + part) * headDim + d) * width;
        const dst = (part * rowsPer + h * headDim + d) * width;
        out.set(a.subarray(src, src + width), dst);
      }
    }
  }
  return out;
}

function loadLayer(r: Reader, spec: ModelSpec, i: number): LayerWeights {
  const H = spec.hiddenSize;
  if (spec.family === "gpt2") {
    const p = r.has(`transformer.h.${i}.ln_1.weight`) ? `transformer.h.${i}` : `h.${i}`;
    return {
      ln1: r.norm(`${p}.ln_1`),
      ln2: r.norm(`${p}.ln_2`),
      qkv: conv1d(r, `${p}.attn.c_attn`),
      o: conv1d(r, `${p}.attn.c_proj`),
      qNorm: null,
      kNorm: null,
      mlp: { kind: "plain", fc: conv1d(r, `${p}.mlp.c_fc`), proj: conv1d(r, `${p}.mlp.c_proj`) },
    };
  }
  if (spec.family === "gpt_neox") {
    const p = `gpt_neox.layers.${i}`;
    const qkvW = unpackNeoxQkv(
      r.raw(`${p}.attention.query_key_value.weight`),
      spec.numHeads,
      spec.headDim,
      H,
    );
    const qkvB = r.opt(`${p}.attention.query_key_value.bias`);
    return {
      ln1: r.norm(`${p}.input_layernorm`),
      ln2: r.norm(`${p}.post_attention_layernorm`),
      qkv: {
        ...r.weight(qkvW),
        b: qkvB ? unpackNeoxQkv(qkvB, spec.numHeads, spec.headDim, 1) : null,
        out: 3 * H,
        in: H,
      },
      o: r.linear([`${p}.attention.dense`]),
      qNorm: null,
      kNorm: null,
      mlp: {
        kind: "plain",
        fc: r.linear([`${p}.mlp.dense_h_to_4h`]),
        proj: r.linear([`${p}.mlp.dense_4h_to_h`]),
      },
    };
  }
  const p = `model.layers.${i}`;
  const attn = `${p}.self_attn`;
  const qkv =
    spec.family === "phi3"
      ? r.linear([`${attn}.qkv_proj`])
      : r.linear([`${attn}.q_proj`, `${attn}.k_proj`, `${attn}.v_proj`]);
  let mlp: Mlp;
  if (spec.family === "phi3") {
    mlp = {
      kind: "gated",
      gateUp: r.linear([`${p}.mlp.gate_up_proj`]),
      down: r.linear([`${p}.mlp.down_proj`]),
    };
  } else if (spec.family === "mixtral") {
    const m = `${p}.block_sparse_moe`;
    const experts = [];
    for (let e = 0; e < spec.numExperts; e++) {
      experts.push({
        gateUp: r.linear([`${m}.experts.${e}.w1`, `${m}.experts.${e}.w3`]),
        down: r.linear([`${m}.experts.${e}.w2`]),
      });
    }
    mlp = { kind: "moe", router: r.linear([`${m}.gate`]), experts };
  } else {
    mlp = {
      kind: "gated",
      gateUp: r.linear([`${p}.mlp.gate_proj`, `${p}.mlp.up_proj`]),
      down: r.linear([`${p}.mlp.down_proj`]),
    };
  }
  return {
    ln1: r.norm(`${p}.input_layernorm`),
    ln2: r.norm(`${p}.post_attention_layernorm`),
    qkv,
    o: r.linear([`${attn}.o_proj`]),
    qNorm: spec.qkNorm ? r.raw(`${attn}.q_norm.weight`) : null,
    kNorm: spec.qkNorm ? r.raw(`${attn}.k_norm.weight`) : null,
    mlp,
  };
}

/**
 * Loads every weight; scratchFloats reserves backend memory for the forward pass's activations,
 * because the WASM backend's memory is sized once (it never grows).
 */
export function loadWeights(
  modelDir: string,
  spec: ModelSpec,
  opts: { dtype: WeightDtype; backend: BackendName; scratchFloats: number; threads?: number },
): ModelWeights {
  const index = readModelTensorIndex(modelDir);
  let floats = opts.scratchFloats + 64 * ALLOC_SLACK_FLOATS;
  for (const t of index.values()) floats += t.shape.reduce((a, b) => a * b, 1) + ALLOC_SLACK_FLOATS;
  // A tied LM head may get its own bf16 copy of the embedding: reserve room for it.
  floats += spec.vocabSize * spec.hiddenSize;
  const backend = createBackend(opts.backend, floats, opts.threads);
  const r = new Reader(index, backend, opts.dtype, opts.dtype === "bf16" && opts.backend === "wasm");
  const layers = [];
  for (let i = 0; i < spec.numLayers; i++) layers.push(loadLayer(r, spec, i));
  let embedName: string;
  let headName: string | null;
  let finalNorm: Norm;
  let posEmbed: Float32Array | null = null;
  if (spec.family === "gpt2") {
    const p = r.has("transformer.wte.weight") ? "transformer." : "";
    embedName = `${p}wte.weight`;
    headName = null;
    finalNorm = r.norm(`${p}ln_f`);
    posEmbed = r.raw(`${p}wpe.weight`);
  } else if (spec.family === "gpt_neox") {
    embedName = "gpt_neox.embed_in.weight";
    headName = spec.tieWordEmbeddings ? null : "embed_out.weight";
    finalNorm = r.norm("gpt_neox.final_layer_norm");
  } else {
    embedName = "model.embed_tokens.weight";
    headName = spec.tieWordEmbeddings ? null : "lm_head.weight";
    finalNorm = r.norm("model.norm");
  }
  const embed = r.place(r.raw(embedName));
  const [vocab, hidden] = r.shape(embedName);
  // A checkpoint saved with tied embeddings has no separate head tensor; the embedding serves.
  const lmHead: Linear =
    headName && r.has(headName)
      ? { ...r.weight(r.raw(headName)), b: null, out: r.shape(headName)[0], in: hidden }
      : { ...(r.packs ? r.weight(embed) : { w: embed, w16: null }), b: null, out: vocab, in: hidden };
  return { embed, posEmbed, layers, finalNorm, lmHead, backend };
}
