import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { test } from "node:test";
import {
  createProgressReporter,
  formatBytes,
  formatProgressLine,
  type ProgressEvent,
  ProgressTracker,
} from "./progress.ts";

test("formatBytes and the log line show bytes, percent, rate and ETA", () => {
  assert.equal(formatBytes(512), "512 B");
  assert.equal(formatBytes(3 * 1024 * 1024), "3.0 MiB");
  const e: ProgressEvent = {
    modelId: "org/m",
    phase: "progress",
    bytesDone: 10 * 1024 * 1024,
    bytesTotal: 40 * 1024 * 1024,
    filesDone: 2,
    filesTotal: 5,
    elapsedMs: 2000,
    rate: 5 * 1024 * 1024,
  };
  assert.equal(formatProgressLine(e), "org/m: 10.0 MiB / 40.0 MiB (25.0%), 2/5 files, 5.0 MiB/s, ETA 6s");
  assert.match(formatProgressLine({ ...e, phase: "done", bytesDone: e.bytesTotal }), /100\.0%.*done in 2s$/);
});

test("the tracker emits start, throttled progress and done with running totals", () => {
  const events: ProgressEvent[] = [];
  const t = new ProgressTracker("m", (e) => events.push(e), 60_000);
  t.start(300, 2);
  t.addBytes(100); // throttled: within the interval after start
  t.addBytes(200);
  t.fileDone();
  t.done();
  assert.deepEqual(
    events.map((e) => [e.phase, e.bytesDone, e.filesDone]),
    [
      ["start", 0, 0],
      ["progress", 300, 1],
      ["done", 300, 1],
    ],
  );
});

test("without a terminal, the reporter logs the start, periodic lines and the end", () => {
  const lines: string[] = [];
  const report = createProgressReporter({ isTTY: false, intervalMs: 0, log: (l) => lines.push(l) });
  const base = { modelId: "m", bytesTotal: 2048, filesDone: 0, filesTotal: 1, elapsedMs: 1000, rate: 1024 };
  report({ ...base, phase: "start", bytesDone: 0 });
  report({ ...base, phase: "progress", bytesDone: 1024 });
  report({ ...base, phase: "done", bytesDone: 2048, filesDone: 1 });
  assert.equal(lines.length, 3);
  assert.equal(lines[0], "Downloading m: 2.0 KiB in 1 files");
  assert.match(lines[1], /1\.0 KiB \/ 2\.0 KiB \(50\.0%\).*ETA 1s/);
  assert.match(lines[2], /done in 1s/);
});

test("on a terminal, the reporter draws a bar", () => {
  const out = Object.assign(new PassThrough(), { isTTY: true, columns: 120 });
  let text = "";
  out.on("data", (d) => (text += d));
  const report = createProgressReporter({ stream: out, isTTY: true });
  const base = { modelId: "m", bytesTotal: 2048, filesDone: 0, filesTotal: 1, elapsedMs: 1000, rate: 1024 };
  report({ ...base, phase: "start", bytesDone: 0 });
  report({ ...base, phase: "done", bytesDone: 2048 });
  assert.match(text, /m \[.*\] 100% \| 2\.0 KiB \/ 2\.0 KiB/);
});
