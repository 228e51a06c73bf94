// A Python executor on CPU torch for tests: small KV cache, 4-token blocks, quiet logs.
import { createPythonExecutor, type PythonExecutor, type PythonExecutorOptions } from "../python-executor.ts";
import { PYTHON } from "./python-env.ts";

export function cpuTorchExecutor(
  modelDir: string,
  over: Partial<PythonExecutorOptions> = {},
): PythonExecutor {
  return createPythonExecutor({
    modelDir,
    pythonExecutable: PYTHON,
    device: "cpu",
    blockSize: 4,
    maxNumSeqs: 8,
    cpuKvCacheBytes: 1 << 20,
    startupTimeoutMs: 60_000,
    onLog: () => {},
    ...over,
  });
}
