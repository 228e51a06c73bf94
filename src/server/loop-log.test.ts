import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { it } from "node:test";
import { startLoopLog } from "./loop-log.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

it("LMI_LOOP_LOG: one line per 100 ms, busy near 1 while the loop computes and near 0 while it waits", async () => {
  const path = join(mkdtempSync(join(tmpdir(), "looplog-")), "loop.jsonl");
  const stop = startLoopLog(path);
  const spinUntil = Date.now() + 800;
  let x = 0;
  // Busy: short synchronous slices, with a turn of the loop between them so the timer can fire.
  while (Date.now() < spinUntil) {
    const sliceEnd = Date.now() + 20;
    while (Date.now() < sliceEnd) x += Math.sqrt(x + 1);
    await new Promise((r) => setImmediate(r));
  }
  const busyEnd = Date.now();
  await sleep(700);
  stop();
  const lines = readFileSync(path, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  assert.ok(lines.length >= 4, `${lines.length} lines`);
  for (const l of lines) {
    assert.ok(l.ms > 0 && l.busy >= 0 && l.busy <= 1, JSON.stringify(l));
  }
  const busy = lines.filter((l) => l.t <= busyEnd && l.t - l.ms >= busyEnd - 800);
  const idle = lines.filter((l) => l.t - l.ms >= busyEnd + 20);
  assert.ok(busy.length >= 2 && idle.length >= 2, `${busy.length} busy, ${idle.length} idle intervals`);
  assert.ok(Math.min(...busy.map((l) => l.busy)) > 0.7, JSON.stringify(busy));
  assert.ok(Math.max(...idle.map((l) => l.busy)) < 0.3, JSON.stringify(idle));
  assert.ok(x > 0);
});
