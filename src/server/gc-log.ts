// LMI_GC_LOG=path: one JSON line per V8 garbage-collection pause of the server process ({"t": epoch ms at its
// start, "ms": its duration, "kind": "minor" | "major" | "incremental" | "weakcb"}), to line up with the
// executor's step log (LMI_STEP_LOG) when a step is launched late. Diagnostic only: off unless the variable is set.

import { appendFileSync } from "node:fs";
import { constants, PerformanceObserver, performance } from "node:perf_hooks";

const KINDS: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: "minor",
  [constants.NODE_PERFORMANCE_GC_MAJOR]: "major",
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: "incremental",
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: "weakcb",
};

/** Starts appending the process's GC pauses to `path`; the returned function stops it. */
export function startGcLog(path: string): () => void {
  const observer = new PerformanceObserver((list) => {
    const lines = list.getEntries().map((e) => {
      const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind ?? -1;
      return JSON.stringify({
        t: Math.round((performance.timeOrigin + e.startTime) * 1000) / 1000,
        ms: Math.round(e.duration * 1000) / 1000,
        kind: KINDS[kind] ?? String(kind),
      });
    });
    if (lines.length > 0) appendFileSync(path, `${lines.join("\n")}\n`);
  });
  observer.observe({ entryTypes: ["gc"] });
  return () => observer.disconnect();
}
