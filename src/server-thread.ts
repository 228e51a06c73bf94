// Starts one of the server's worker threads (the engine thread, the CPU executor's thread) from the plain-JS entry
// beside the caller's module, which registers tsx inside the thread (module hooks do not reach worker threads from
// the parent in Node 20). The single-file server bundle (scripts/gpu/bundle-entry.ts) sets __lmiBundleUrl to its
// own URL: then the thread runs the bundle, whose entry tells the threads apart by their workerData's `kind`.
import { Worker } from "node:worker_threads";

declare global {
  var __lmiBundleUrl: string | undefined;
}

/** A worker thread running `entry` (a URL beside the caller), or the bundle when running from one. */
export function startServerThread(entry: URL, workerData: { kind: string }): Worker {
  const bundle = globalThis.__lmiBundleUrl;
  return new Worker(bundle !== undefined ? new URL(bundle) : entry, {
    workerData,
    // --input-type (node -e scripts) is rejected by workers, so it is the one parent flag not passed on.
    execArgv: process.execArgv.filter((a) => !a.startsWith("--input-type")),
  });
}
