// Entry of the single-file server bundle carried to the GPU machine (no tsx there): runs the CLI, or, when
// the bundle was started as one of the server's threads, that thread's work: the engine thread
// (option.engine_thread) or the CPU executor's. The bundle's own URL is left where src/server-thread.ts finds it,
// so the code that starts those threads starts the bundle.
import { isMainThread, parentPort, workerData } from "node:worker_threads";
import { main } from "../../src/cli.ts";
import { runEngineThread } from "../../src/engine/thread/engine-worker.ts";
import { runCpuExecutorThread } from "../../src/executor/cpu/worker.ts";

globalThis.__lmiBundleUrl = import.meta.url;
if (!isMainThread && parentPort !== null && workerData?.kind === "lmi-engine-thread") {
  await runEngineThread(parentPort, workerData);
} else if (!isMainThread && parentPort !== null && workerData?.kind === "lmi-cpu-executor-thread") {
  runCpuExecutorThread(parentPort, workerData);
} else {
  await main(process.argv);
}
