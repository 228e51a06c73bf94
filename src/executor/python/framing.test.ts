import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { encodeFrame, FrameDecoder } from "./framing.ts";
import { runPython, torchMissing } from "./testing/python-env.ts";

describe("executor framing", () => {
  it("round-trips header and payload however the bytes are chunked", () => {
    const a = encodeFrame({ id: 1, type: "execute", plan: { stepId: 3 } });
    const b = encodeFrame({ id: 2, type: "x" }, Buffer.from([1, 2, 3, 250]));
    const all = Buffer.concat([a, b]);
    for (const size of [1, 3, 7, all.length]) {
      const d = new FrameDecoder();
      const frames = [];
      for (let i = 0; i < all.length; i += size) frames.push(...d.push(all.subarray(i, i + size)));
      assert.equal(frames.length, 2, `chunk size ${size}`);
      assert.deepEqual(frames[0].header, { id: 1, type: "execute", plan: { stepId: 3 } });
      assert.equal(frames[0].payload.length, 0);
      assert.deepEqual([...frames[1].payload], [1, 2, 3, 250]);
    }
  });

  it("rejects a frame whose header overruns its body", () => {
    const bad = Buffer.alloc(12);
    bad.writeUInt32BE(8, 0);
    bad.writeUInt32BE(100, 4);
    assert.throws(() => new FrameDecoder().push(bad), /header length 100 exceeds body/);
  });

  it("matches the Python side byte for byte", { skip: torchMissing ?? false }, () => {
    const header = { id: 7, ok: true, result: { sampledTokenIds: { a: [1, 2] }, x: "é" } };
    const py = runPython(
      [
        "import json, base64",
        "from lmi_executor.protocol import encode_frame, decode_body",
        `h = json.loads(${JSON.stringify(JSON.stringify(header))})`,
        "frame = encode_frame(h, b'\\x00\\xff')",
        `ts = base64.b64decode("${encodeFrame(header, Buffer.from([0, 255])).toString("base64")}")`,
        "print(json.dumps({'frame': base64.b64encode(frame).decode(), 'decoded': decode_body(ts[4:])[0], 'payload': list(decode_body(ts[4:])[1])}))",
      ].join("\n"),
    ) as { frame: string; decoded: unknown; payload: number[] };
    assert.deepEqual(py.decoded, header);
    assert.deepEqual(py.payload, [0, 255]);
    const frames = new FrameDecoder().push(Buffer.from(py.frame, "base64"));
    assert.deepEqual(frames[0].header, header);
    assert.deepEqual([...frames[0].payload], [0, 255]);
  });
});
