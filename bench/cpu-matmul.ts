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
const wasm = new WasmBackend(40_000_000);
const ts = new TsBackend();

function time(fn: () => void, minMs = 300): number {
  fn();
  let reps = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < minMs) {
    fn();
    reps++;
    t = performance.now();
  }
  return (t - t0) / reps;
}

console.log("M\tN\tK\tts ms\twasm ms\tts GFLOP/s\twasm GFLOP/s\tratio");
for (const [M, N, K] of shapes) {
  const x = wasm.alloc(M * K);
  const w = wasm.alloc(N * K);
  const y = wasm.alloc(M * N);
  for (let i = 0; i < x.length; i++) x[i] = Math.sin(i);
  for (let i = 0; i < w.length; i++) w[i] = Math.cos(i);
  const flop = 2 * M * N * K;
  const tTs = time(() => ts.matmul(y, x, w, M, N, K));
  const tW = time(() => wasm.matmul(y, x, w, M, N, K));
  console.log(
    [
      M,
      N,
      K,
      tTs.toFixed(3),
      tW.toFixed(3),
      (flop / tTs / 1e6).toFixed(2),
      (flop / tW / 1e6).toFixed(2),
      (tTs / tW).toFixed(1),
    ].join("\t"),
  );
}
