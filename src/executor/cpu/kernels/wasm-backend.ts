// The WASM SIMD128 backend: one fixed-size shared linear memory holds weights, KV cache and activations;
// kernels.wasm computes matmuls (fp32 or bf16 weights) and paged attention. With threads=2 a helper
// thread (matmul-helper.mjs) runs the same module on the same memory and takes half of each large
// matmul's output columns; off by default, since on the shared 2-core VM it measured slower at batch 8. Invariants: memory never grows (views never detach); one matmul is in flight
// at a time, and the caller returns only after the helper reported its half done.

import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import type { AttendArgs, MathBackend } from "./math-backend.ts";

const WASM_PAGE = 65536;

// The project's tsconfig has no DOM lib, so @types/node leaves the WebAssembly global undeclared:
// describe the few members used here instead of pulling in lib.dom.
interface WasmMemory {
  readonly buffer: ArrayBufferLike;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Memory: new (d: { initial: number; maximum?: number; shared?: boolean }) => WasmMemory;
  Instance: new (m: object, imports: object) => { exports: Record<string, unknown> };
}
const WA = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

let wasmModule: object | null = null;

function loadModule(): object {
  if (!wasmModule) wasmModule = new WA.Module(readFileSync(new URL("./kernels.wasm", import.meta.url)));
  return wasmModule;
}

type Kernel = (y: number, x: number, w: number, M: number, N: number, K: number, ldy: number) => void;

// Control block shared with the helper (Int32 slots); keep in sync with matmul-helper.mjs.
const SEQ = 0;
const DONE = 1;
const STOP = 2;
const KIND = 3;
const ARGS = 4; // y, x, w, M, N, K, ldy

/** Below this many multiply-adds a matmul runs on one thread: waking the helper costs more. */
const SPLIT_MIN_MACS = 1 << 19;

export class WasmBackend implements MathBackend {
  readonly name = "wasm";
  readonly threads: number;
  private readonly memory: WasmMemory;
  private readonly buf: ArrayBufferLike;
  private readonly kernel: Kernel;
  private readonly kernelBf16: Kernel;
  private readonly attend: (...args: number[]) => void;
  private readonly silu: (out: number, gu: number, rows: number, I: number) => void;
  private next: number;
  private readonly limit: number;
  private readonly helper: Worker | null = null;
  private readonly ctrl: Int32Array | null = null;
  private seq = 0;

  /** capacityFloats: everything this backend will ever alloc(), summed (plus 16 floats per allocation). */
  constructor(capacityFloats: number, opts: { threads?: number } = {}) {
    const mod = loadModule();
    const heapProbe = new WA.Memory({ initial: 64, maximum: 64, shared: true });
    const probe = new WA.Instance(mod, { env: { memory: heapProbe } });
    const heapBase = (probe.exports.__heap_base as { value: number }).value;
    const bytes = heapBase + 64 + capacityFloats * 4;
    const pages = Math.ceil(bytes / WASM_PAGE);
    if (pages > 65536) throw new Error(`WASM backend: ${bytes} bytes exceed the 4 GiB wasm32 address space`);
    this.memory = new WA.Memory({ initial: pages, maximum: pages, shared: true });
    this.buf = this.memory.buffer;
    const inst = new WA.Instance(mod, { env: { memory: this.memory } });
    this.kernel = inst.exports.matmul_nt as Kernel;
    this.kernelBf16 = inst.exports.matmul_nt_bf16 as Kernel;
    this.attend = inst.exports.attend_row as WasmBackend["attend"];
    this.silu = inst.exports.silu_mul as WasmBackend["silu"];
    this.next = Math.ceil(heapBase / 64) * 64;
    this.limit = pages * WASM_PAGE;
    this.threads = Math.max(1, Math.min(2, opts.threads ?? 1, availableParallelism()));
    if (this.threads > 1) {
      this.ctrl = new Int32Array(new SharedArrayBuffer(16 * 4));
      this.helper = new Worker(new URL("./matmul-helper.mjs", import.meta.url), {
        workerData: { module: mod, memory: this.memory, ctrl: this.ctrl.buffer },
      });
      // The helper only ever waits for work: it must not keep the process alive.
      this.helper.unref();
    }
  }

  alloc(length: number): Float32Array {
    const bytes = length * 4;
    if (this.next + bytes > this.limit) {
      throw new Error(`WASM backend out of reserved memory (wanted ${bytes} more bytes)`);
    }
    const view = new Float32Array(this.buf, this.next, length);
    this.next = Math.ceil((this.next + bytes) / 64) * 64;
    return view;
  }

  allocU16(length: number): Uint16Array {
    const f = this.alloc(Math.ceil(length / 2));
    return new Uint16Array(f.buffer, f.byteOffset, length);
  }

  allocI32(length: number): Int32Array {
    const f = this.alloc(length);
    return new Int32Array(f.buffer, f.byteOffset, length);
  }

  private check(...views: ArrayBufferView[]): void {
    for (const v of views) {
      if (v.buffer !== this.buf)
        throw new Error("WASM kernel operands must be allocated by the same WasmBackend");
    }
  }

  matmul(y: Float32Array, x: Float32Array, w: Float32Array, M: number, N: number, K: number): void {
    this.check(y, x, w);
    this.run(0, y.byteOffset, x.byteOffset, w.byteOffset, M, N, K, 4);
  }

  matmulBf16(y: Float32Array, x: Float32Array, w: Uint16Array, M: number, N: number, K: number): void {
    this.check(y, x, w);
    this.run(1, y.byteOffset, x.byteOffset, w.byteOffset, M, N, K, 2);
  }

  /** Splits output columns between this thread and the helper when the matmul is big enough. */
  private run(
    kind: number,
    y: number,
    x: number,
    w: number,
    M: number,
    N: number,
    K: number,
    wBytes: number,
  ) {
    const kernel = kind === 0 ? this.kernel : this.kernelBf16;
    const c = this.ctrl;
    if (!c || M * N * K < SPLIT_MIN_MACS || N < 8) {
      kernel(y, x, w, M, N, K, N);
      return;
    }
    const n1 = (N >> 3) << 2; // first half, a multiple of 4 so both halves keep the 4-wide blocks
    c[KIND] = kind;
    c[ARGS] = y + n1 * 4;
    c[ARGS + 1] = x;
    c[ARGS + 2] = w + n1 * K * wBytes;
    c[ARGS + 3] = M;
    c[ARGS + 4] = N - n1;
    c[ARGS + 5] = K;
    c[ARGS + 6] = N;
    const seq = ++this.seq;
    Atomics.store(c, SEQ, seq);
    Atomics.notify(c, SEQ);
    kernel(y, x, w, M, n1, K, N);
    // The helper usually finishes about when we do: spin briefly before sleeping.
    for (let i = 0; i < 20000 && Atomics.load(c, DONE) !== seq; i++);
    while (Atomics.load(c, DONE) !== seq) Atomics.wait(c, DONE, seq - 1, 50);
  }

  attendRow({ out, q, kc, vc, slots, n, scores, nh, nkv, hd, scale }: AttendArgs): void {
    this.check(out, q, kc, vc, slots, scores);
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

  siluMul(out: Float32Array, gu: Float32Array, rows: number, I: number): void {
    this.check(out, gu);
    this.silu(out.byteOffset, gu.byteOffset, rows, I);
  }

  close(): void {
    if (!this.ctrl || !this.helper) return;
    Atomics.store(this.ctrl, STOP, 1);
    Atomics.notify(this.ctrl, SEQ);
    void this.helper.terminate();
  }
}
