// Public surface of the CPU executor: the worker_thread executor servers use, the in-thread one tests
// use, and the architecture check rolling_batch=auto asks.
export { CpuExecutor, type CpuExecutorOptions, createCpuExecutor } from "./cpu-executor.ts";
export { createInThreadCpuExecutor, InThreadCpuExecutor } from "./in-thread-executor.ts";
export { supportsArchitecture } from "./model-config.ts";
