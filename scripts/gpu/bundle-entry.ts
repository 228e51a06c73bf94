// Entry of the single-file server bundle carried to the GPU machine (no tsx there): runs the CLI, or, when
// the bundle was started as the engine thread (option.engine_thread), that thread's work. The bundle's own URL
// is left where ThreadEngine looks for the script to start that thread with.
import { isMainThread, parentPort, workerData } from "node:worker_threads";
import { main } from "../../src/cli.ts";
import { runEngineThread } from "../../src/engine/thread/engine-worker.ts";

globalThis.__lmiBundleUrl = import.meta.url;
if (!isMainThread && parentPort !== null && workerData?.kind === "lmi-engine-thread") {
  await runEngineThread(parentPort, workerData);
} else {
  await main(process.argv);
}
