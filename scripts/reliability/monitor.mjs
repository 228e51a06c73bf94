// Preload (node --import) that makes a server process report on itself: every SOAK_MONITOR_INTERVAL_MS
// it appends one JSON line to SOAK_MONITOR_FILE with resident memory, heap, event-loop delay
// percentiles over the interval, and the count of active handles. Main thread only; it never keeps the
// process alive (unref'd timer) and does nothing when SOAK_MONITOR_FILE is unset.
import { appendFileSync } from "node:fs";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { isMainThread } from "node:worker_threads";

const file = process.env.SOAK_MONITOR_FILE;
if (isMainThread && file) {
  const intervalMs = Number(process.env.SOAK_MONITOR_INTERVAL_MS ?? 10_000);
  // 10 ms resolution: delays shorter than that do not matter to clients; finer costs CPU.
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  const t0 = Date.now();
  const sample = () => {
    const m = process.memoryUsage();
    const ms = (ns) => Math.round(ns / 1e4) / 100;
    const line = {
      tS: Math.round((Date.now() - t0) / 100) / 10,
      rssMiB: Math.round((m.rss / 2 ** 20) * 10) / 10,
      heapUsedMiB: Math.round((m.heapUsed / 2 ** 20) * 10) / 10,
      externalMiB: Math.round((m.external / 2 ** 20) * 10) / 10,
      eldP50Ms: ms(h.percentile(50)),
      eldP99Ms: ms(h.percentile(99)),
      eldMaxMs: ms(h.max),
      activeHandles: process.getActiveResourcesInfo().length,
    };
    h.reset();
    appendFileSync(file, `${JSON.stringify(line)}\n`);
  };
  setInterval(sample, intervalMs).unref();
}
