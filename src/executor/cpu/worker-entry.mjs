// Plain-JS entry of the CPU executor thread when the server runs from source: registers tsx inside the thread
// (module hooks do not reach worker threads from the parent in Node 20), then runs worker.ts.
// (The single-file bundle starts the thread from itself instead: scripts/gpu/bundle-entry.ts.)
import { parentPort, workerData } from "node:worker_threads";
import { register } from "tsx/esm/api";

register();
const { runCpuExecutorThread } = await import("./worker.ts");
runCpuExecutorThread(parentPort, workerData);
