"""Framing tests for djl_python.wire: the golden frames shared with the TypeScript tests
(test/fixtures/handlers/frames.json) must decode and re-encode byte-for-byte."""

import base64
import json
import os
import socket
import sys
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))

from djl_python import wire  # noqa: E402

with open(os.path.join(ROOT, "test", "fixtures", "handlers", "frames.json"), encoding="utf-8") as f:
    GOLDEN = json.load(f)


def raw(item):
    return base64.b64decode(item["b64"]) if "b64" in item else item["text"].encode("utf-8")


class FakeConn:
    """Serves recv() from a byte string in small slices, like a socket under load."""

    def __init__(self, data, step=3):
        self.data, self.pos, self.step = data, 0, step

    def recv(self, n):
        out = self.data[self.pos:self.pos + min(n, self.step)]
        self.pos += len(out)
        return out


class WireTest(unittest.TestCase):
    def test_golden_inputs_decode(self):
        for g in GOLDEN["inputs"]:
            props, content = wire.read_input_frame(FakeConn(bytes.fromhex(g["hex"])))
            self.assertEqual(props, g["properties"], g["name"])
            self.assertEqual(content, [(c["key"], raw(c)) for c in g["content"]], g["name"])

    def test_golden_inputs_encode(self):
        for g in GOLDEN["inputs"]:
            content = [(c["key"], raw(c)) for c in g["content"]]
            self.assertEqual(wire.pack_input(g["properties"], content).hex(), g["hex"], g["name"])

    def test_golden_outputs_encode(self):
        for g in GOLDEN["outputs"]:
            if "chunks" in g:
                data = wire.pack_stream_start(g["code"], g["message"], g["properties"])
                data += b"".join(wire.pack_stream_chunk(raw(c), True) for c in g["chunks"])
                data += wire.pack_stream_chunk(b"", False)
            else:
                content = [(c["key"], raw(c)) for c in g["content"]]
                data = wire.pack_output(g["code"], g["message"], g["properties"], content)
            self.assertEqual(data.hex(), g["hex"], g["name"])

    def test_hand_computed_output_header(self):
        # int16 204 | int32 2 "No" | int16 0 | int16 0
        self.assertEqual(wire.pack_output(204, "No", {}, []).hex(), "00cc" + "00000002" + "4e6f" + "0000" + "0000")

    def test_disconnect_mid_frame(self):
        data = bytes.fromhex(GOLDEN["inputs"][1]["hex"])[:-2]
        with self.assertRaises(wire.ConnectionClosed):
            wire.read_input_frame(FakeConn(data))

    def test_oversized_item_rejected(self):
        with self.assertRaises(ValueError):
            wire.pack_output(200, "OK", {}, [("data", b"x" * (wire.MAX_ITEM_SIZE + 1))])

    def test_over_a_real_socket(self):
        a, b = socket.socketpair()
        try:
            a.sendall(wire.pack_input({"k": "v"}, [("data", b"\x00\x01")]))
            self.assertEqual(wire.read_input_frame(b), ({"k": "v"}, [("data", b"\x00\x01")]))
        finally:
            a.close()
            b.close()


if __name__ == "__main__":
    unittest.main()
