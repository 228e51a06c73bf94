// Benchmark (not a test): CPU executor tokens/s for a model (default models/tiny-kjv) at concurrency 1
// and 8, through the worker-thread executor and the real Executor API. Prints prefill and decode rates.
// Run: node --import tsx bench/cpu-tokens.ts [--model DIR] [--backend wasm|ts] [--dtype fp32|bf16]
//        [--new 128] [--prompt 32] [--concurrency 1,8]
import { parseArgs } from "node:util";
import { createCpuExecutor } from "../src/executor/cpu/index.ts";
import type { BackendName } from "../src/executor/cpu/kernels/math-backend.ts";
import { PlanDriver, samplingSettings } from "../test/conformance/plan-driver.ts";

const { values } = parseArgs({
  options: {
    model: { type: "string", default: "models/tiny-kjv" },
    backend: { type: "string", default: "wasm" },
    dtype: { type: "string" },
    new: { type: "string", default: "128" },
    prompt: { type: "string", default: "32" },
    concurrency: { type: "string", default: "1,8" },
  },
});
const maxNew = Number(values.new);
const promptLen = Number(values.prompt);

const ex = createCpuExecutor({
  modelDir: values.model!,
  backend: values.backend as BackendName,
  kvCacheBytes: 64 << 20,
});
const info = await ex.load();
const prof = await ex.profile();
await ex.initCache(prof.numBlocks);
console.log(
  `model ${values.model} (${info.architecture}, ${info.dtype}), backend ${values.backend}, prompt ${promptLen}, new ${maxNew}`,
);
console.log("concurrency\tprefill tok/s\tdecode tok/s\tms/step (decode)\ttotal gen tok/s");

function prompt(seed: number): number[] {
  return Array.from({ length: promptLen }, (_, i) => 2 + ((seed * 131 + i * 17) % (info.vocabSize - 2)));
}

async function run(concurrency: number): Promise<void> {
  const d = new PlanDriver(ex, prof.blockSize, prof.numBlocks);
  for (let i = 0; i < concurrency; i++)
    d.add(`r${i}`, prompt(i), samplingSettings({ ignoreEos: true }), maxNew);
  const t0 = performance.now();
  await d.step(); // every prompt prefills in this first step and samples its first token
  const t1 = performance.now();
  let steps = 0;
  while (d.active.length > 0) {
    await d.step();
    steps++;
  }
  const t2 = performance.now();
  const decoded = concurrency * (maxNew - 1);
  console.log(
    [
      concurrency,
      ((concurrency * promptLen) / ((t1 - t0) / 1000)).toFixed(0),
      (decoded / ((t2 - t1) / 1000)).toFixed(1),
      ((t2 - t1) / steps).toFixed(2),
      ((concurrency * maxNew) / ((t2 - t0) / 1000)).toFixed(1),
    ].join("\t\t"),
  );
}

await run(1); // warm-up (JIT, page-in)
for (const c of values.concurrency!.split(",").map(Number)) await run(c);
await ex.shutdown();
