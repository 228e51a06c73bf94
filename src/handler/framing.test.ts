// Framing tests: the golden frames in test/fixtures/handlers/frames.json (also decoded by the Python
// tests) must encode and decode byte-for-byte; plus hand-computed bytes and split/truncated reads.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { decodeOutputBytes, encodeInput, FrameReader, FramingError, readOutput } from "./framing.ts";

interface GoldenItem {
  key: string | null;
  text?: string;
  b64?: string;
}
interface Golden {
  inputs: Array<{ name: string; properties: Record<string, string>; content: GoldenItem[]; hex: string }>;
  outputs: Array<{
    name: string;
    code: number;
    message: string;
    properties: Record<string, string>;
    content?: GoldenItem[];
    chunks?: GoldenItem[];
    hex: string;
  }>;
}

const golden: Golden = JSON.parse(
  readFileSync(new URL("../../test/fixtures/handlers/frames.json", import.meta.url), "utf8"),
);

function bytesOf(i: GoldenItem): Buffer {
  return i.b64 !== undefined ? Buffer.from(i.b64, "base64") : Buffer.from(i.text ?? "", "utf8");
}

test("encodeInput matches every golden Input frame", () => {
  assert.ok(golden.inputs.length >= 3);
  for (const g of golden.inputs) {
    const content = g.content.map((c) => ({ key: c.key ?? "data", value: bytesOf(c) }));
    assert.equal(encodeInput({ properties: g.properties, content }).toString("hex"), g.hex, g.name);
  }
});

test("decodeOutputBytes decodes every golden Output frame", async () => {
  assert.ok(golden.outputs.some((g) => g.chunks));
  for (const g of golden.outputs) {
    const out = await decodeOutputBytes(Buffer.from(g.hex, "hex"));
    assert.equal(out.code, g.code, g.name);
    assert.equal(out.message, g.message, g.name);
    assert.deepEqual(out.properties, g.properties, g.name);
    if (g.chunks) {
      assert.deepEqual(
        out.chunks?.map((c) => Buffer.from(c).toString("hex")),
        g.chunks.map((c) => bytesOf(c).toString("hex")),
        g.name,
      );
    } else {
      assert.deepEqual(
        out.content.map((c) => [c.key, Buffer.from(c.value).toString("hex")]),
        (g.content ?? []).map((c) => [c.key ?? "data", bytesOf(c).toString("hex")]),
        g.name,
      );
    }
  }
});

test("encodeInput writes the documented layout (hand-computed bytes)", () => {
  const hex = encodeInput({
    properties: { a: "b" },
    content: [{ key: "k", value: Uint8Array.of(7) }],
  }).toString("hex");
  // int16 1 | int32 1 "a" | int32 1 "b" | int16 1 | int32 1 "k" | int32 1 | 07
  assert.equal(
    hex,
    "0001" + "00000001" + "61" + "00000001" + "62" + "0001" + "00000001" + "6b" + "00000001" + "07",
  );
});

test("a frame split across many socket reads decodes the same", async () => {
  const g = golden.outputs.find((o) => o.name === "stream")!;
  const bytes = Buffer.from(g.hex, "hex");
  const r = new FrameReader();
  const pending = readOutput(r);
  for (const b of bytes) r.push(Buffer.of(b));
  const { output, done } = await pending;
  const chunks: string[] = [];
  for await (const c of output.stream!) chunks.push(Buffer.from(c).toString());
  await done;
  assert.deepEqual(chunks, ['{"a":1}\n', "", '{"b":2}\n']);
});

test("a truncated stream fails the iterator with the close reason", async () => {
  const g = golden.outputs.find((o) => o.name === "stream")!;
  const bytes = Buffer.from(g.hex, "hex");
  const r = new FrameReader();
  r.push(bytes.subarray(0, bytes.length - 7));
  r.close(new FramingError("worker exited"));
  const { output } = await readOutput(r);
  const seen: string[] = [];
  await assert.rejects(async () => {
    for await (const c of output.stream!) seen.push(Buffer.from(c).toString());
  }, /worker exited/);
  assert.deepEqual(seen, ['{"a":1}\n', ""]);
});

test("trailing bytes after a plain frame are reported", async () => {
  const g = golden.outputs.find((o) => o.name === "ok")!;
  await assert.rejects(decodeOutputBytes(Buffer.from(g.hex + "00", "hex")), /trailing bytes/);
});
