// Benchmark (not a test): the two rolling-batch strategies on the CPU executor — paged (vLLM-style
// scheduler, paged KV) and padded (rolling_batch=scheduler: sub-batches by max_sparsity/max_splits,
// contiguous KV per sub-batch) — over several prompt-length mixes. Each run drives the real scheduler
// and the in-thread executor step by step and reports generated tokens/s, steps, forward sub-batches,
// and peak KV: paged = blocks in use; padded = slots reserved (regions, repack transients included)
// and the rows x current-width footprint a growing HF cache would hold.
// tok/s is the best of --repeat runs, by wall clock and by this process's CPU time (user + system; the
// executor runs in-thread, so CPU time is the compute and survives a busy shared machine better).
// The other columns are deterministic.
// Run: node --import tsx bench/padded-vs-paged.ts [--model models/tiny-kjv] [--new 64] [--seqs 16] [--repeat 2]
import { parseArgs } from "node:util";
import { PaddedScheduler } from "../src/engine/padded/padded-scheduler.ts";
import { Request } from "../src/engine/request.ts";
import { Scheduler } from "../src/engine/scheduler/scheduler.ts";
import { createInThreadCpuExecutor } from "../src/executor/cpu/index.ts";
import { neutralSamplingSettings } from "../src/executor/testing/sampling-settings.ts";
import type { Executor, SamplingSettings } from "../src/executor/types.ts";

const { values } = parseArgs({
  options: {
    model: { type: "string", default: "models/tiny-kjv" },
    new: { type: "string", default: "64" },
    seqs: { type: "string", default: "16" },
    repeat: { type: "string", default: "2" },
  },
});
const maxNew = Number(values.new);
const maxNumSeqs = Number(values.seqs);
const MiB = 1 << 20;

/** Prompt lengths per mix; "staggered" adds one request every 4 steps instead of all at once. */
const MIXES: Record<string, { lens: number[]; every: number }> = {
  uniform: { lens: new Array(16).fill(64), every: 0 },
  mixed: { lens: [8, 32, 128, 256].flatMap((n) => [n, n, n, n]), every: 0 },
  skewed: { lens: [...new Array(15).fill(16), 512], every: 0 },
  staggered: { lens: [8, 32, 128, 256].flatMap((n) => [n, n, n, n]), every: 4 },
};

function sampling(eos: number[]): SamplingSettings {
  // ignoreEos: fixed lengths, so both strategies do the same work
  return neutralSamplingSettings({ seed: 1, penaltyAlpha: 0.6, eosTokenIds: eos, ignoreEos: true });
}

interface Run {
  tokens: number;
  seconds: number;
  cpuSeconds: number;
  steps: number;
  forwards: number;
  peakMiB: number;
  peakWidthMiB: number;
}

async function runOne(padded: boolean, mix: (typeof MIXES)[string], sparsity: number): Promise<Run> {
  const ex: Executor = createInThreadCpuExecutor({
    modelDir: values.model!,
    kvCacheBytes: 64 * MiB,
    kvLayout: padded ? "padded" : "paged",
  });
  const info = await ex.load();
  const prof = await ex.profile();
  await ex.initCache(prof.numBlocks);
  const common = { maxNumSeqs, maxNumBatchedTokens: 4096, maxModelLen: info.maxModelLen };
  const sched = padded
    ? new PaddedScheduler({ ...common, numSlots: prof.numBlocks, maxSparsity: sparsity, maxSplits: 3 })
    : new Scheduler({
        ...common,
        blockSize: prof.blockSize,
        numBlocks: prof.numBlocks,
        enablePrefixCaching: false,
      });
  const reqs = mix.lens.map(
    (n, i) =>
      new Request({
        reqId: `r${i}`,
        promptTokenIds: Array.from({ length: n }, (_, j) => 3 + ((i * 131 + j * 17) % (info.vocabSize - 3))),
        sampling: sampling(info.eosTokenIds),
        maxTokens: maxNew,
      }),
  );
  let next = 0;
  let tokens = 0;
  let steps = 0;
  let forwards = 0;
  let peak = 0;
  let peakWidth = 0;
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  while (next < reqs.length || sched.hasPendingWork) {
    const due = mix.every === 0 ? reqs.length : Math.min(reqs.length, Math.floor(steps / mix.every) + 1);
    for (; next < due; next++) sched.addRequest(reqs[next]);
    const plan = sched.schedule();
    const out = await ex.execute(plan);
    for (const o of sched.updateFromOutput(plan as never, out)) tokens += o.newTokenIds.length;
    steps++;
    if (sched instanceof PaddedScheduler) {
      forwards += plan.padded!.decode.length + plan.padded!.prefill.length;
      peak = Math.max(peak, sched.slotUsage.peak);
      let width = 0;
      for (const b of sched.layout()) {
        const lens = b.reqIds.map((id) => sched.getRequest(id)?.numComputedTokens ?? 0);
        width += lens.length * Math.max(0, ...lens);
      }
      peakWidth = Math.max(peakWidth, width);
    } else {
      forwards += plan.totalNumScheduledTokens > 0 ? 1 : 0;
      peak = Math.max(peak, Math.round(sched.kv.usage * prof.numBlocks));
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  await ex.shutdown();
  return {
    tokens,
    seconds,
    cpuSeconds: (c.user + c.system) / 1e6,
    steps,
    forwards,
    peakMiB: (peak * prof.bytesPerBlock) / MiB,
    peakWidthMiB: (peakWidth * prof.bytesPerBlock) / MiB,
  };
}

console.log(`model ${values.model}, ${maxNew} new tokens each, max_rolling_batch_size ${maxNumSeqs}, greedy`);
console.log(
  "| mix | strategy | gen tok/s (wall) | gen tok per CPU-s | steps | forward calls | peak KV MiB | padded rows x width MiB |",
);
console.log("|---|---|---|---|---|---|---|---|");
async function best(padded: boolean, mix: (typeof MIXES)[string], sparsity: number): Promise<Run> {
  let r = await runOne(padded, mix, sparsity);
  for (let i = 1; i < Number(values.repeat); i++) {
    const again = await runOne(padded, mix, sparsity);
    r = {
      ...r,
      seconds: Math.min(r.seconds, again.seconds),
      cpuSeconds: Math.min(r.cpuSeconds, again.cpuSeconds),
    };
  }
  return r;
}

await runOne(false, MIXES.uniform, 0.33); // warm-up (JIT, page-in)
for (const [name, mix] of Object.entries(MIXES)) {
  const cells = [
    ["paged", await best(false, mix, 0)],
    ["padded, max_sparsity 0.33", await best(true, mix, 0.33)],
    ["padded, max_sparsity 0.05", await best(true, mix, 0.05)],
  ] as const;
  for (const [label, r] of cells) {
    console.log(
      `| ${name} (${mix.lens.length} prompts ${Math.min(...mix.lens)}-${Math.max(...mix.lens)}) | ${label} | ${(r.tokens / r.seconds).toFixed(0)} | ${(r.tokens / r.cpuSeconds).toFixed(0)} | ${r.steps} | ${r.forwards} | ${r.peakMiB.toFixed(2)} | ${label === "paged" ? "-" : r.peakWidthMiB.toFixed(2)} |`,
    );
  }
}
