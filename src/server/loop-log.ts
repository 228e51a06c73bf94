// LMI_LOOP_LOG=path: one JSON line every 100 ms with how busy the server's event loop was over that interval
// ({"t": epoch ms at the interval's end, "ms": its length, "busy": the fraction of it the loop spent running
// callbacks rather than waiting for I/O}). Everything Node does per step (scheduling, plan encoding, reply
// decoding, detokenization, SSE delivery) runs on this one thread, so a "busy" near 1 while the GPU idles
// between steps says the executor is waiting for Node. Diagnostic only: off unless the variable is set.

import { appendFileSync } from "node:fs";
import { performance } from "node:perf_hooks";

const INTERVAL_MS = 100;

/** Starts appending the loop's utilization to `path` every 100 ms; the returned function stops it. */
export function startLoopLog(path: string): () => void {
  let last = performance.eventLoopUtilization();
  const timer = setInterval(() => {
    const now = performance.eventLoopUtilization();
    const delta = performance.eventLoopUtilization(now, last);
    last = now;
    const line = {
      t: Math.round((performance.timeOrigin + performance.now()) * 1000) / 1000,
      ms: Math.round((delta.idle + delta.active) * 1000) / 1000,
      busy: Math.round(delta.utilization * 10000) / 10000,
    };
    appendFileSync(path, `${JSON.stringify(line)}\n`);
  }, INTERVAL_MS);
  timer.unref();
  return () => clearInterval(timer);
}
