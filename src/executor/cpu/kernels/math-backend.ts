// Matrix-multiply backends of the CPU executor: y[M,N] = x[M,K] · w[N,K]ᵀ (HF Linear layout).
// "ts" is the plain TypeScript reference used to cross-check; "wasm" runs matmul.c's SIMD128 kernel.
// Invariant: every operand passed to a backend's matmul was allocated by that backend's alloc(), because
// the WASM kernel addresses one fixed-size linear memory (it never grows, so views never detach).
import { readFileSync } from "node:fs";

export type BackendName = "ts" | "wasm";

export interface MathBackend {
  readonly name: BackendName;
  /** A zeroed Float32Array usable as a matmul operand. */
  alloc(length: number): Float32Array;
  matmul(y: Float32Array, x: Float32Array, w: Float32Array, M: number, N: number, K: number): void;
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
  if (!wasmModule) wasmModule = new WA.Module(readFileSync(new URL("./matmul.wasm", import.meta.url)));
  return wasmModule;
}

export class WasmBackend implements MathBackend {
  readonly name = "wasm";
  private readonly memory: WasmMemory;
  private readonly kernel: (y: number, x: number, w: number, M: number, N: number, K: number) => void;
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
