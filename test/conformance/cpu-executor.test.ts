// Runs the executor conformance suite against the CPU executor on its worker_thread, with the
// full-vocabulary logits check through the in-process forward pass (same code the worker runs).
import { createCpuExecutor } from "../../src/executor/cpu/index.ts";
import { createForward, loadModel } from "../../src/executor/cpu/model.ts";
import { supportsArchitecture } from "../../src/executor/cpu/model-config.ts";
import { defineExecutorConformance } from "./executor-conformance.ts";

defineExecutorConformance({
  name: "cpu",
  supports: (cfg) => supportsArchitecture(cfg),
  create: async (modelDir) => createCpuExecutor({ modelDir, kvCacheBytes: 8 << 20, blockSize: 4 }),
  fullLogits: async (modelDir, ids) => {
    const m = loadModel(modelDir);
    const numBlocks = Math.ceil(ids.length / 16);
    const fwd = createForward(m, numBlocks, 16, 0);
    const table = Array.from({ length: numBlocks }, (_, i) => numBlocks - 1 - i);
    return fwd.forward([{ tokens: ids, startPos: 0, blockTable: table, logits: "all", hidden: false }])[0]
      .logits;
  },
  tokenBudget: 16,
  // Measured worst case over the zoo: 3.2e-5 (qwen2) on log-probs, 1.7e-5 on raw logits.
  logprobTol: 2e-4,
});
