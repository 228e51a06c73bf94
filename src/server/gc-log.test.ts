import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { it } from "node:test";
import { startGcLog } from "./gc-log.ts";

it("LMI_GC_LOG: one JSON line per GC pause, with its start, duration and kind", async () => {
  const path = join(mkdtempSync(join(tmpdir(), "gclog-")), "gc.jsonl");
  const stop = startGcLog(path);
  const before = Date.now();
  let keep: unknown[] = [];
  for (let i = 0; i < 2_000_000; i++) {
    keep.push({ i });
    if (keep.length > 10_000) keep = [];
  }
  await new Promise((r) => setTimeout(r, 50));
  stop();
  const lines = readFileSync(path, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  assert.ok(lines.length > 0);
  for (const l of lines) {
    assert.ok(l.t >= before - 1 && l.t <= Date.now(), `start ${l.t}`);
    assert.ok(l.ms >= 0);
    assert.ok(["minor", "major", "incremental", "weakcb"].includes(l.kind), l.kind);
  }
  assert.ok(lines.some((l) => l.kind === "minor"));
});
