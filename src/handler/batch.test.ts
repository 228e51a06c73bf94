// Dynamic batching: the batch Input encoding and reply split of spec §5.6, and the job queue's
// batch-size / max-batch-delay behaviour and capacity limit.

import assert from "node:assert/strict";
import { test } from "node:test";
import { encodeBatch, type Job, JobQueue, splitBatch } from "./batch.ts";
import type { DjlOutput } from "./protocol.ts";

const b = (s: string) => Buffer.from(s);

test("one request is sent as it is, plus the shared properties", () => {
  const input = { properties: { a: "1" }, content: [{ key: "data", value: b("x") }] };
  assert.deepEqual(encodeBatch([input], { handler: "handle" }), {
    properties: { a: "1", handler: "handle" },
    content: input.content,
  });
});

test("N requests are prefixed batch_%03d. with batch_size", () => {
  const enc = encodeBatch(
    [
      { properties: { "content-type": "text/plain" }, content: [{ key: "data", value: b("x") }] },
      { properties: {}, content: [{ key: "", value: b("y") }] },
    ],
    { handler: "h" },
  );
  assert.deepEqual(enc.properties, { batch_size: "2", handler: "h", "batch_000.content-type": "text/plain" });
  assert.deepEqual(
    enc.content.map((c) => [c.key, Buffer.from(c.value).toString()]),
    [
      ["batch_000.data", "x"],
      ["batch_001.data", "y"],
    ],
  );
});

function reply(keys: string[], props: Record<string, string> = {}, code = 200): DjlOutput {
  return { code, message: "OK", properties: props, content: keys.map((k) => ({ key: k, value: b(k) })) };
}

test("a batch reply splits by prefix; prefixed properties go to their request only", () => {
  const outs = splitBatch(
    reply(["batch_1.data", "batch_0.data", "batch_0.extra"], { a: "1", "batch_1.x": "y" }),
    2,
  );
  assert.deepEqual(
    outs.map((o) => o.content.map((c) => c.key)),
    [["data", "extra"], ["data"]],
  );
  assert.deepEqual(
    outs.map((o) => o.properties),
    [{ a: "1" }, { a: "1", x: "y" }],
  );
});

test("a batch reply that misses a request or has unprefixed items fails", () => {
  assert.throws(() => splitBatch(reply(["batch_0.data"]), 2), /no output for request\(s\) 1 of 2/);
  assert.throws(() => splitBatch(reply(["batch_0.data", "data"]), 2), /'data', which belongs to no request/);
  assert.throws(() => splitBatch(reply(["batch_0.data", "batch_2.data"]), 2), /'batch_2.data'/);
});

test("an error reply goes to every request of the batch", () => {
  const err = reply(["data"], {}, 424);
  assert.deepEqual(splitBatch(err, 3), [err, err, err]);
});

function job(name: string, log: string[]): Job {
  return {
    input: { properties: { name }, content: [] },
    resolve: () => log.push(`ok ${name}`),
    reject: (e) => log.push(`err ${name}: ${e.message}`),
  };
}

test("take waits up to max_batch_delay for more jobs, up to batch_size", async () => {
  const q = new JobQueue(10, "m");
  const stop = new AbortController();
  const log: string[] = [];
  q.add(job("a", log));
  setTimeout(() => q.add(job("b", log)), 20);
  const t0 = Date.now();
  const batch = await q.take(3, 150, stop.signal);
  const waited = Date.now() - t0;
  assert.deepEqual(
    batch.map((j) => j.input.properties.name),
    ["a", "b"],
  );
  assert.ok(waited >= 140 && waited < 1000, `waited ${waited} ms`);
  q.add(job("c", log));
  q.add(job("d", log));
  const full = await q.take(2, 10_000, stop.signal);
  assert.equal(full.length, 2, "a full batch goes without waiting for the delay");
});

test("the queue enforces job_queue_size and fails queued jobs on close", async () => {
  const q = new JobQueue(1, "m");
  const log: string[] = [];
  q.add(job("a", log));
  assert.throws(() => q.add(job("b", log)), /Worker queue capacity exceeded for model: m/);
  q.close(new Error("gone"));
  assert.deepEqual(log, ["err a: gone"]);
  assert.deepEqual(await q.take(1, 0, new AbortController().signal), []);
});

test("an aborted request leaves the queue; a stopped taker returns empty", async () => {
  const q = new JobQueue(5, "m");
  const log: string[] = [];
  const ac = new AbortController();
  q.add({ ...job("a", log), signal: ac.signal });
  ac.abort();
  assert.equal(q.length, 0);
  assert.match(log[0], /cancelled/);
  const stop = new AbortController();
  setTimeout(() => stop.abort(), 10);
  assert.deepEqual(await q.take(1, 0, stop.signal), []);
});
