// Helper thread of WasmBackend (plain JS, so it needs no TypeScript loader): instantiates kernels.wasm on
// the shared memory and computes the column range of each matmul the owner posts in the control block
// (slots: SEQ, DONE, STOP, KIND, then y, x, w, M, N, K, ldy; keep in sync with wasm-backend.ts).
import { workerData } from "node:worker_threads";

const SEQ = 0;
const DONE = 1;
const STOP = 2;
const KIND = 3;
const ARGS = 4;

const { module, memory, ctrl } = workerData;
const inst = new WebAssembly.Instance(module, { env: { memory } });
const kernels = [inst.exports.matmul_nt, inst.exports.matmul_nt_bf16];
const c = new Int32Array(ctrl);
let seen = 0;

for (;;) {
  // Matmuls of one step come in quick succession: spin a little before sleeping on the futex.
  for (let i = 0; i < 20000 && Atomics.load(c, SEQ) === seen; i++);
  if (Atomics.load(c, SEQ) === seen) Atomics.wait(c, SEQ, seen, 1000);
  if (Atomics.load(c, STOP) === 1) break;
  const seq = Atomics.load(c, SEQ);
  if (seq === seen) continue;
  seen = seq;
  kernels[c[KIND]](c[ARGS], c[ARGS + 1], c[ARGS + 2], c[ARGS + 3], c[ARGS + 4], c[ARGS + 5], c[ARGS + 6]);
  Atomics.store(c, DONE, seq);
  Atomics.notify(c, DONE);
}
