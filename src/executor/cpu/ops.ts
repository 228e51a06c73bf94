// Elementwise and row-wise operations of the forward pass in plain TypeScript: norms, activations,
// rotary embeddings. They mirror Hugging Face's fp32 math (variance in fp32, rope angles in fp32) so
// logits agree with transformers' goldens to ~1e-5.
import type { Activation, RopeSpec } from "./model-config.ts";
import type { Norm } from "./weights.ts";

/** out[r] = norm(x[r]) for `rows` rows of width n (RMSNorm when norm.b is unused and rms=true). */
export function normRows(
  out: Float32Array,
  x: Float32Array,
  rows: number,
  n: number,
  norm: Norm,
  kind: "rms" | "layer",
  eps: number,
): void {
  const w = norm.w;
  const b = norm.b;
  for (let r = 0; r < rows; r++) {
    const o = r * n;
    if (kind === "rms") {
      let ss = 0;
      for (let i = 0; i < n; i++) ss += x[o + i] * x[o + i];
      const inv = 1 / Math.sqrt(Math.fround(ss / n) + eps);
      for (let i = 0; i < n; i++) out[o + i] = w[i] * Math.fround(x[o + i] * inv);
    } else {
      let mean = 0;
      for (let i = 0; i < n; i++) mean += x[o + i];
      mean /= n;
      let v = 0;
      for (let i = 0; i < n; i++) {
        const d = x[o + i] - mean;
        v += d * d;
      }
      const inv = 1 / Math.sqrt(v / n + eps);
      for (let i = 0; i < n; i++) out[o + i] = (x[o + i] - mean) * inv * w[i] + (b ? b[i] : 0);
    }
  }
}

/** RMSNorm over each head vector in place (Qwen3 q_norm / k_norm). */
export function headRmsNorm(
  x: Float32Array,
  offset: number,
  heads: number,
  dim: number,
  w: Float32Array,
  eps: number,
) {
  for (let h = 0; h < heads; h++) {
    const o = offset + h * dim;
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[o + i] * x[o + i];
    const inv = 1 / Math.sqrt(Math.fround(ss / dim) + eps);
    for (let i = 0; i < dim; i++) x[o + i] = w[i] * Math.fround(x[o + i] * inv);
  }
}

// Abramowitz & Stegun 7.1.26 is only 1.5e-7 absolute; use erfc's continued-fraction-free series from
// Numerical Recipes (erfcCheb), accurate to ~1.2e-7 relative, good for fp32 GELU.
function erf(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t *
          (1.00002368 +
            t *
              (0.37409196 +
                t *
                  (0.09678418 +
                    t *
                      (-0.18628806 +
                        t *
                          (0.27886807 +
                            t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? 1 - r : r - 1;
}

export function activate(x: number, act: Activation): number {
  switch (act) {
    case "silu":
      return x / (1 + Math.exp(-x));
    case "gelu":
      return 0.5 * x * (1 + erf(x / Math.SQRT2));
    case "gelu_tanh":
      return 0.5 * x * (1 + Math.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
    case "relu":
      return Math.max(x, 0);
  }
}

/** Inverse frequencies in fp32, as HF computes them, with llama3/linear scaling applied. */
export function ropeInvFreq(rope: RopeSpec): Float32Array {
  const half = rope.rotaryDim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / rope.theta ** Math.fround((2 * i) / rope.rotaryDim);
  const sc = rope.scaling;
  if (sc?.type === "linear") for (let i = 0; i < half; i++) inv[i] = inv[i] / sc.factor;
  if (sc?.type === "llama3") {
    const lowWavelen = sc.originalMax / sc.lowFreqFactor;
    const highWavelen = sc.originalMax / sc.highFreqFactor;
    for (let i = 0; i < half; i++) {
      const wavelen = (2 * Math.PI) / inv[i];
      if (wavelen > lowWavelen) inv[i] = inv[i] / sc.factor;
      else if (wavelen >= highWavelen) {
        const smooth = (sc.originalMax / wavelen - sc.lowFreqFactor) / (sc.highFreqFactor - sc.lowFreqFactor);
        inv[i] = (1 - smooth) * (inv[i] / sc.factor) + smooth * inv[i];
      }
    }
  }
  return inv;
}

/** cos/sin tables [rows, half] for the given positions (fp32 angles, like HF). */
export function ropeTables(invFreq: Float32Array, positions: Int32Array, rows: number) {
  const half = invFreq.length;
  const cos = new Float32Array(rows * half);
  const sin = new Float32Array(rows * half);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < half; i++) {
      const a = Math.fround(positions[r] * invFreq[i]);
      cos[r * half + i] = Math.cos(a);
      sin[r * half + i] = Math.sin(a);
    }
  }
  return { cos, sin };
}

/** Rotate-half RoPE on the first 2*half dims of each head vector (HF Llama/NeoX layout). */
export function applyRope(
  x: Float32Array,
  offset: number,
  heads: number,
  headDim: number,
  cos: Float32Array,
  sin: Float32Array,
  tableOffset: number,
  half: number,
): void {
  for (let h = 0; h < heads; h++) {
    const o = offset + h * headDim;
    for (let i = 0; i < half; i++) {
      const c = cos[tableOffset + i];
      const s = sin[tableOffset + i];
      const x1 = x[o + i];
      const x2 = x[o + i + half];
      x[o + i] = x1 * c - x2 * s;
      x[o + i + half] = x2 * c + x1 * s;
    }
  }
}
