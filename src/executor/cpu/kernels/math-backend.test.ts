import assert from "node:assert/strict";
import { test } from "node:test";
import { TsBackend } from "./math-backend.ts";
import { WasmBackend } from "./wasm-backend.ts";

function rand(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

test("TS reference matmul computes x·wᵀ", () => {
  const b = new TsBackend();
  const y = b.alloc(2 * 3);
  // x = [[1,2],[3,4]], w rows = [1,0],[0,1],[1,1]
  b.matmul(y, Float32Array.from([1, 2, 3, 4]), Float32Array.from([1, 0, 0, 1, 1, 1]), 2, 3, 2);
  assert.deepEqual(Array.from(y), [1, 2, 3, 3, 4, 7]);
});

test("WASM SIMD matmul equals the TS reference for tails in M, N and K", () => {
  const ref = new TsBackend();
  const wasm = new WasmBackend(200_000, { threads: 1 });
  const r = rand(42);
  for (const [M, N, K] of [
    [1, 1, 1],
    [1, 7, 5],
    [3, 9, 13],
    [4, 4, 4],
    [5, 6, 8],
    [9, 17, 33],
    [16, 64, 64],
  ]) {
    const x = wasm.alloc(M * K);
    const w = wasm.alloc(N * K);
    const y = wasm.alloc(M * N);
    for (let i = 0; i < x.length; i++) x[i] = r();
    for (let i = 0; i < w.length; i++) w[i] = r();
    const yr = new Float32Array(M * N);
    ref.matmul(yr, x, w, M, N, K);
    wasm.matmul(y, x, w, M, N, K);
    for (let i = 0; i < yr.length; i++) {
      assert.ok(Math.abs(yr[i] - y[i]) < 1e-5, `M=${M} N=${N} K=${K} i=${i}: ${yr[i]} vs ${y[i]}`);
    }
  }
});

test("WASM backend refuses foreign operands and over-allocation", () => {
  const wasm = new WasmBackend(64, { threads: 1 });
  const y = wasm.alloc(4);
  assert.throws(() => wasm.matmul(y, new Float32Array(4), new Float32Array(4), 1, 1, 4), /same WasmBackend/);
  assert.throws(() => wasm.alloc(1_000_000), /out of reserved memory/);
});

test("WASM attention equals the TS reference (GQA, scattered slots, odd head dim)", () => {
  const ref = new TsBackend();
  const wasm = new WasmBackend(400_000, { threads: 1 });
  const r = rand(7);
  for (const [nh, nkv, hd, n] of [
    [4, 2, 16, 1],
    [4, 4, 6, 37],
    [8, 2, 32, 200],
  ]) {
    const numSlots = 256;
    const kc = wasm.alloc(numSlots * nkv * hd);
    const vc = wasm.alloc(numSlots * nkv * hd);
    const q = wasm.alloc(nh * hd);
    for (const a of [kc, vc, q]) for (let i = 0; i < a.length; i++) a[i] = r() * 4;
    const slots = wasm.allocI32(n);
    for (let j = 0; j < n; j++) slots[j] = (j * 97 + 13) % numSlots;
    const out = wasm.alloc(nh * hd);
    const outRef = new Float32Array(nh * hd);
    const scores = wasm.alloc(n);
    const args = { q, kc, vc, slots, n, scores, nh, nkv, hd, scale: 1 / Math.sqrt(hd) };
    wasm.attendRow({ ...args, out });
    ref.attendRow({ ...args, out: outRef });
    for (let i = 0; i < out.length; i++) {
      assert.ok(
        Math.abs(out[i] - outRef[i]) < 1e-5,
        `nh=${nh} nkv=${nkv} hd=${hd} n=${n} i=${i}: ${out[i]} vs ${outRef[i]}`,
      );
    }
  }
});

test("WASM bf16-weight matmul equals fp32 matmul of the same (bf16-exact) weights", () => {
  const wasm = new WasmBackend(100_000, { threads: 1 });
  const r = rand(11);
  for (const [M, N, K] of [
    [1, 5, 7],
    [3, 9, 16],
    [8, 33, 64],
  ]) {
    const x = wasm.alloc(M * K);
    const w = wasm.alloc(N * K);
    const w16 = wasm.allocU16(N * K);
    for (let i = 0; i < x.length; i++) x[i] = r();
    const bits = new Uint32Array(w.buffer, w.byteOffset, w.length);
    for (let i = 0; i < w.length; i++) {
      w[i] = r();
      bits[i] &= 0xffff0000; // make the fp32 weight exactly representable in bf16
      w16[i] = bits[i] >>> 16;
    }
    const y = wasm.alloc(M * N);
    const y16 = wasm.alloc(M * N);
    wasm.matmul(y, x, w, M, N, K);
    wasm.matmulBf16(y16, x, w16, M, N, K);
    assert.deepEqual(Array.from(y16), Array.from(y), `M=${M} N=${N} K=${K}`);
  }
});

test("two threads split large matmuls by columns and get the single-thread result exactly", () => {
  const one = new WasmBackend(3_000_000, { threads: 1 });
  const two = new WasmBackend(3_000_000, { threads: 2 });
  try {
    assert.equal(two.threads, 2);
    const r = rand(5);
    for (const [M, N, K] of [
      [1, 4100, 256],
      [8, 1540, 256],
      [37, 771, 100],
    ]) {
      const x1 = one.alloc(M * K);
      const w1 = one.alloc(N * K);
      const x2 = two.alloc(M * K);
      const w2 = two.alloc(N * K);
      const w16 = two.allocU16(N * K);
      for (let i = 0; i < x1.length; i++) x1[i] = x2[i] = r();
      for (let i = 0; i < w1.length; i++) w1[i] = w2[i] = r();
      const bits = new Uint32Array(w2.buffer, w2.byteOffset, w2.length);
      for (let i = 0; i < w2.length; i++) w16[i] = bits[i] >>> 16;
      const y1 = one.alloc(M * N);
      const y2 = two.alloc(M * N);
      one.matmul(y1, x1, w1, M, N, K);
      for (let rep = 0; rep < 3; rep++) {
        y2.fill(Number.NaN);
        two.matmul(y2, x2, w2, M, N, K);
        assert.deepEqual(Array.from(y2), Array.from(y1), `M=${M} N=${N} K=${K}`);
      }
      const yb = two.alloc(M * N);
      two.matmulBf16(yb, x2, w16, M, N, K);
      assert.ok(
        yb.every((v) => Number.isFinite(v)),
        "bf16 split filled every column",
      );
    }
  } finally {
    two.close();
  }
});

test("WASM silu·up equals x/(1+e^-x)·u to fp32 precision, including saturated inputs", () => {
  const wasm = new WasmBackend(10_000, { threads: 1 });
  const I = 7;
  const rows = 3;
  const gu = wasm.alloc(rows * 2 * I);
  const out = wasm.alloc(rows * I);
  const r = rand(3);
  for (let i = 0; i < gu.length; i++) gu[i] = r() * 40;
  gu[0] = -100;
  gu[1] = 100;
  wasm.siluMul(out, gu, rows, I);
  for (let row = 0; row < rows; row++) {
    for (let i = 0; i < I; i++) {
      const g = gu[row * 2 * I + i];
      const want = (g / (1 + Math.exp(-g))) * gu[row * 2 * I + I + i];
      const got = out[row * I + i];
      assert.ok(
        Math.abs(got - want) <= 1e-6 * Math.max(1, Math.abs(want)),
        `row ${row} i ${i}: ${got} vs ${want}`,
      );
    }
  }
});
