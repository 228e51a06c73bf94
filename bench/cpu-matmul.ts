// Benchmark (not a test): GFLOP/s of the CPU executor's matmul backends on decode- and prefill-shaped
// problems, TS reference vs WASM SIMD128, in one run so the ratios are comparable.
// Run: node --import tsx bench/cpu-matmul.ts
import { TsBackend } from "../src/executor/cpu/kernels/math-backend.ts";
import { WasmBackend } from "../src/executor/cpu/kernels/wasm-backend.ts";

const shapes: Array<[number, number, number]> = [
  [1, 1024, 256],
  [8, 1024, 256],
  [64, 1024, 256],
  [1, 3072, 768],
  [8, 3072, 768],
  [64, 3072, 768],
  [512, 512, 512],
];
const wasm = new WasmBackend(7 * 16_000_000, { threads: 1 });
const wasm2 = new WasmBackend(7 * 16_000_000, { threads: 2 });
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
console.log("GFLOP/s (best run): ts reference, wasm fp32 / bf16 weights on 1 thread, and on 2 threads");
console.log("M\tN\tK\tts\tfp32\tbf16\tfp32x2\tbf16x2\tbf16x2/fp32");
for (const [M, N, K] of shapes) {
  const copies = Math.max(1, Math.ceil((32 << 20) / (N * K * 4)));
  const flop = 2 * M * N * K;
  const g = (t: number) => (flop / t / 1e6).toFixed(2);
  const row: string[] = [String(M), String(N), String(K)];
  const times: number[] = [];
  for (const b of [wasm, wasm2]) {
    const x = b.alloc(M * K);
    const y = b.alloc(M * N);
    for (let i = 0; i < x.length; i++) x[i] = Math.sin(i);
    const ws: Float32Array[] = [];
    const w16s: Uint16Array[] = [];
    for (let c = 0; c < copies; c++) {
      const w = b.alloc(N * K);
      const w16 = b.allocU16(N * K);
      for (let i = 0; i < w.length; i++) w[i] = Math.cos(i + c);
      const bits = new Uint32Array(w.buffer, w.byteOffset, w.length);
      for (let i = 0; i < w.length; i++) w16[i] = bits[i] >>> 16;
      ws.push(w);
      w16s.push(w16);
    }
    let c = 0;
    if (b === wasm) times.push(time(() => ts.matmul(y, x, ws[c++ % copies], M, N, K), 200));
    times.push(time(() => b.matmul(y, x, ws[c++ % copies], M, N, K)));
    times.push(time(() => b.matmulBf16(y, x, w16s[c++ % copies], M, N, K)));
  }
  row.push(...times.map(g), (times[1] / times[4]).toFixed(2));
  console.log(row.join("\t"));
}
wasm2.close();
