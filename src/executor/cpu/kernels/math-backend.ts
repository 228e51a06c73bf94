// Compute backends of the CPU executor: matmul y[M,N] = x[M,K] · w[N,K]ᵀ (HF Linear layout) and paged
// attention of one query row. "ts" is the plain TypeScript reference used to cross-check; "wasm" runs
// the SIMD128 kernels of matmul.c/attention.c. Invariant: every operand passed to a backend was
// allocated by that backend, because the WASM kernels address one fixed-size linear memory (it never
// grows, so views never detach).
import { WasmBackend } from "./wasm-backend.ts";

export type BackendName = "ts" | "wasm";

export interface MathBackend {
  readonly name: BackendName;
  /** A zeroed Float32Array usable as a matmul operand. */
  alloc(length: number): Float32Array;
  allocI32(length: number): Int32Array;
  /** Only backends with a bf16-weight matmul offer these two. */
  allocU16?(length: number): Uint16Array;
  matmulBf16?(y: Float32Array, x: Float32Array, w: Uint16Array, M: number, N: number, K: number): void;
  matmul(y: Float32Array, x: Float32Array, w: Float32Array, M: number, N: number, K: number): void;
  /**
   * out[nh*hd] = attention of q[nh*hd] over the positions whose KV slots are slots[0..n): kc/vc hold one
   * layer, slot s of kv head g at (s*nkv + g)*hd. Heads share kv heads in groups of nh/nkv (GQA).
   */
  attendRow(a: AttendArgs): void;
  /** Optional fast path: out[r][i] = silu(gu[r][i]) * gu[r][I+i] over rows of [gate | up]. */
  siluMul?(out: Float32Array, gu: Float32Array, rows: number, I: number): void;
  /** Stops helper threads, if any. */
  close?(): void;
}

export interface AttendArgs {
  out: Float32Array;
  q: Float32Array;
  kc: Float32Array;
  vc: Float32Array;
  slots: Int32Array;
  n: number;
  /** Scratch of at least n floats from the same backend. */
  scores: Float32Array;
  nh: number;
  nkv: number;
  hd: number;
  scale: number;
}

/** Reference: straightforward dot products in float64 accumulators. */
export class TsBackend implements MathBackend {
  readonly name = "ts";
  alloc(length: number): Float32Array {
    return new Float32Array(length);
  }
  matmul(y: Float32Array, x: Float32Array, w: Float32Array, M: number, N: number, K: number): void {
    for (let m = 0; m < M; m++) {
      const xo = m * K;
      for (let n = 0; n < N; n++) {
        const wo = n * K;
        let s = 0;
        for (let k = 0; k < K; k++) s += x[xo + k] * w[wo + k];
        y[m * N + n] = s;
      }
    }
  }
  allocI32(length: number): Int32Array {
    return new Int32Array(length);
  }
  private scores = new Float64Array(256);
  private acc = new Float64Array(64);
  attendRow({ out, q, kc, vc, slots, n, nh, nkv, hd, scale }: AttendArgs): void {
    // Float64 scores and sums: the reference is as exact as cheaply possible.
    if (this.scores.length < n) this.scores = new Float64Array(n * 2);
    if (this.acc.length < hd) this.acc = new Float64Array(hd);
    const { scores, acc } = this;
    const group = nh / nkv;
    const stride = nkv * hd;
    for (let h = 0; h < nh; h++) {
      const qo = h * hd;
      const g = Math.floor(h / group) * hd;
      let max = -Infinity;
      for (let j = 0; j < n; j++) {
        const ko = slots[j] * stride + g;
        let d = 0;
        for (let i = 0; i < hd; i++) d += q[qo + i] * kc[ko + i];
        d *= scale;
        scores[j] = d;
        if (d > max) max = d;
      }
      let sum = 0;
      for (let j = 0; j < n; j++) {
        const e = Math.exp(scores[j] - max);
        scores[j] = e;
        sum += e;
      }
      acc.fill(0, 0, hd);
      for (let j = 0; j < n; j++) {
        const p = scores[j] / sum;
        const vo = slots[j] * stride + g;
        for (let i = 0; i < hd; i++) acc[i] += p * vc[vo + i];
      }
      for (let i = 0; i < hd; i++) out[qo + i] = acc[i];
    }
  }
}

/** Floats of padding WasmBackend may spend per allocation (alignment to 64 bytes). */
export const ALLOC_SLACK_FLOATS = 16;

export function createBackend(name: BackendName, capacityFloats: number, threads?: number): MathBackend {
  return name === "wasm" ? new WasmBackend(capacityFloats, { threads }) : new TsBackend();
}
