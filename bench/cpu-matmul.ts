// Benchmark (not a test): GFLOP/s of the CPU executor's matmul backends on decode- and prefill-shaped
// problems, TS reference vs WASM SIMD128, in one run so the ratios are comparable.
// Run: node --import tsx bench/cpu-matmul.ts
import { TsBackend, WasmBackend } from "../src/executor/cpu/kernels/math-backend.ts";

const shapes: Array<[number, number, number]> = [
  [1, 1024, 256],
  [8, 1024, 256],
  [64, 1024, 256],
  [1, 3072, 768],
  [8, 3072, 768],
  [64, 3072, 768],
  [512, 512, 512],
];
const wasm = new WasmBackend(7 * 16_000_000);
const ts = new TsBackend();

/** Fastest single run within the window: the machine is shared, and the minimum is what interference
 * inflates least. */
function time(fn: () => void, minMs = 300): number {
  fn();
  let best = Infinity;
  const t0 = performance.now();
  while (performance.now() - t0 < minMs) {
    const a = performance.now();
    fn();
    best = Math.min(best, performance.now() - a);
  }
  return best;
}

console.log("weights cycle through 32 MB of copies, so they stream from memory as in a real forward pass");
console.log("M\tN\tK\tts ms\twasm ms\tbf16 ms\tts GFLOP/s\twasm GFLOP/s\tbf16 GFLOP/s\twasm/ts\tbf16/wasm");
for (const [M, N, K] of shapes) {
  const copies = Math.max(1, Math.ceil((32 << 20) / (N * K * 4)));
  const x = wasm.alloc(M * K);
  const y = wasm.alloc(M * N);
  const ws: Float32Array[] = [];
  const w16s: Uint16Array[] = [];
  for (let c = 0; c < copies; c++) {
    const w = wasm.alloc(N * K);
    const w16 = wasm.allocU16(N * K);
    for (let i = 0; i < w.length; i++) w[i] = Math.cos(i + c);
    const bits = new Uint32Array(w.buffer, w.byteOffset, w.length);
    for (let i = 0; i < w.length; i++) w16[i] = bits[i] >>> 16;
    ws.push(w);
    w16s.push(w16);
  }
  for (let i = 0; i < x.length; i++) x[i] = Math.sin(i);
  const flop = 2 * M * N * K;
  let c = 0;
  const tTs = time(() => ts.matmul(y, x, ws[c++ % copies], M, N, K), 200);
  const tW = time(() => wasm.matmul(y, x, ws[c++ % copies], M, N, K));
  const tB = time(() => wasm.matmulBf16(y, x, w16s[c++ % copies], M, N, K));
  const g = (t: number) => (flop / t / 1e6).toFixed(2);
  console.log(
    [
      M,
      N,
      K,
      tTs.toFixed(3),
      tW.toFixed(3),
      tB.toFixed(3),
      g(tTs),
      g(tW),
      g(tB),
      (tTs / tW).toFixed(1),
      (tW / tB).toFixed(2),
    ].join("\t"),
  );
}
