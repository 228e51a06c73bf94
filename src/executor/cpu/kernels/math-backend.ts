// Compute backends of the CPU executor: matmul y[M,N] = x[M,K] · w[N,K]ᵀ (HF Linear layout) and paged
// attention of one query row. "ts" is the plain TypeScript reference used to cross-check; "wasm" runs
// the SIMD128 kernels of matmul.c/attention.c. Invariant: every operand passed to a backend was
// allocated by that backend, because the WASM kernels address one fixed-size linear memory (it never
// grows, so views never detach).
import { readFileSync } from "node:fs";

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

const WASM_PAGE = 65536;

// The project's tsconfig has no DOM lib, so @types/node leaves the WebAssembly global undeclared:
// describe the few members used here instead of pulling in lib.dom.
interface WasmMemory {
  readonly buffer: ArrayBuffer;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Memory: new (d: { initial: number; maximum?: number }) => WasmMemory;
  Instance: new (m: object, imports: object) => { exports: Record<string, unknown> };
}
const WA = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

let wasmModule: object | null = null;

function loadModule(): object {
  if (!wasmModule) wasmModule = new WA.Module(readFileSync(new URL("./kernels.wasm", import.meta.url)));
  return wasmModule;
}

export class WasmBackend implements MathBackend {
  readonly name = "wasm";
  private readonly memory: WasmMemory;
  private readonly kernel: (y: number, x: number, w: number, M: number, N: number, K: number) => void;
  private readonly attend: (...args: number[]) => void;
  private readonly kernelBf16: WasmBackend["kernel"];
  private next: number;
  private readonly limit: number;

  /** capacityFloats: everything this backend will ever alloc(), summed (plus 16 floats per allocation). */
  constructor(capacityFloats: number) {
    const mod = loadModule();
    const heapProbe = new WA.Memory({ initial: 64 });
    const probe = new WA.Instance(mod, { env: { memory: heapProbe } });
    const heapBase = (probe.exports.__heap_base as { value: number }).value;
    const bytes = heapBase + 64 + capacityFloats * 4;
    const pages = Math.ceil(bytes / WASM_PAGE);
    if (pages > 65536) throw new Error(`WASM backend: ${bytes} bytes exceed the 4 GiB wasm32 address space`);
    this.memory = new WA.Memory({ initial: pages, maximum: pages });
    const inst = new WA.Instance(mod, { env: { memory: this.memory } });
    this.kernel = inst.exports.matmul_nt as WasmBackend["kernel"];
    this.attend = inst.exports.attend_row as WasmBackend["attend"];
    this.kernelBf16 = inst.exports.matmul_nt_bf16 as WasmBackend["kernel"];
    this.next = Math.ceil(heapBase / 64) * 64;
    this.limit = pages * WASM_PAGE;
  }

  alloc(length: number): Float32Array {
    const bytes = length * 4;
    if (this.next + bytes > this.limit) {
      throw new Error(`WASM backend out of reserved memory (wanted ${bytes} more bytes)`);
    }
    const view = new Float32Array(this.memory.buffer, this.next, length);
    this.next = Math.ceil((this.next + bytes) / 64) * 64;
    return view;
  }

  allocU16(length: number): Uint16Array {
    const f = this.alloc(Math.ceil(length / 2));
    return new Uint16Array(f.buffer, f.byteOffset, length);
  }

  matmulBf16(y: Float32Array, x: Float32Array, w: Uint16Array, M: number, N: number, K: number): void {
    const buf = this.memory.buffer;
    if (y.buffer !== buf || x.buffer !== buf || w.buffer !== buf) {
      throw new Error("WASM matmul operands must be allocated by the same WasmBackend");
    }
    this.kernelBf16(y.byteOffset, x.byteOffset, w.byteOffset, M, N, K);
  }

  allocI32(length: number): Int32Array {
    const f = this.alloc(length);
    return new Int32Array(f.buffer, f.byteOffset, length);
  }

  attendRow({ out, q, kc, vc, slots, n, scores, nh, nkv, hd, scale }: AttendArgs): void {
    const buf = this.memory.buffer;
    const views = [out, q, kc, vc, slots, scores];
    if (views.some((v) => v.buffer !== buf)) {
      throw new Error("WASM attention operands must be allocated by the same WasmBackend");
    }
    if (scores.length < n || slots.length < n) throw new Error("attention scratch shorter than the context");
    this.attend(
      out.byteOffset,
      q.byteOffset,
      kc.byteOffset,
      vc.byteOffset,
      slots.byteOffset,
      n,
      nh,
      nkv,
      hd,
      scale,
      scores.byteOffset,
    );
  }

  matmul(y: Float32Array, x: Float32Array, w: Float32Array, M: number, N: number, K: number): void {
    const buf = this.memory.buffer;
    if (y.buffer !== buf || x.buffer !== buf || w.buffer !== buf) {
      throw new Error("WASM matmul operands must be allocated by the same WasmBackend");
    }
    this.kernel(y.byteOffset, x.byteOffset, w.byteOffset, M, N, K);
  }
}

/** Floats of padding WasmBackend may spend per allocation (alignment to 64 bytes). */
export const ALLOC_SLACK_FLOATS = 16;

export function createBackend(name: BackendName, capacityFloats: number): MathBackend {
  return name === "wasm" ? new WasmBackend(capacityFloats) : new TsBackend();
}
