// Runs the executor conformance suite against the Python executor (python/lmi_executor) over its real
// protocol. In CI it runs on Debian's CPU PyTorch through the reference attention path; on a GPU machine
// set LMI_TEST_PYTHON_DEVICE=cuda (fp32, so the transformers fp32 goldens apply).
import { createPythonExecutor } from "../../src/executor/python/python-executor.ts";
import { PYTHON, torchMissing } from "../../src/executor/python/testing/python-env.ts";
import { defineExecutorConformance } from "./executor-conformance.ts";

const SUPPORTED = new Set([
  "LlamaForCausalLM",
  "MistralForCausalLM",
  "Qwen2ForCausalLM",
  "Qwen3ForCausalLM",
  "Phi3ForCausalLM",
  "MixtralForCausalLM",
  "GPT2LMHeadModel",
  "GPTNeoXForCausalLM",
]);
const device = process.env.LMI_TEST_PYTHON_DEVICE === "cuda" ? "cuda" : "cpu";

if (torchMissing) {
  // Registers the suite with every model skipped for the stated reason.
  defineExecutorConformance({
    name: `python (${torchMissing})`,
    supports: () => false,
    create: async () => {
      throw new Error(torchMissing ?? "");
    },
  });
} else {
  defineExecutorConformance({
    name: `python-${device}`,
    supports: (cfg) => {
      const arch = (cfg.architectures as string[] | undefined)?.[0] ?? "";
      // Qwen's sliding window (use_sliding_window) is refused by the executor; skip such configs here too.
      return SUPPORTED.has(arch) && !cfg.use_sliding_window;
    },
    create: async (modelDir) =>
      createPythonExecutor({
        modelDir,
        pythonExecutable: PYTHON,
        device,
        dtype: "fp32",
        blockSize: device === "cpu" ? 4 : 16,
        cpuKvCacheBytes: 8 << 20,
        maxNumSeqs: 32,
        onLog: () => {},
      }),
    tokenBudget: 16,
    // Measured on the CPU path over llama/mistral/qwen2/qwen3: well under 2e-4 (python tests use the same).
    logprobTol: device === "cpu" ? 2e-4 : 1e-3,
  });
}
