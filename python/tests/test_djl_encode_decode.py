"""encode_decode tests: content-type dispatch of decode(), csv both ways, encode() per accept type,
and the NDList round trip through Output.add_as_numpy / Input.get_as_numpy when numpy is present."""

import importlib.util
import json
import os
import sys
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))

from djl_python import Input, Output  # noqa: E402
from djl_python.encode_decode import decode, encode, encode_csv  # noqa: E402

HAS_NUMPY = importlib.util.find_spec("numpy") is not None


def inp(raw: bytes):
    return Input.from_frame({}, [("data", raw)])


class DecodeTest(unittest.TestCase):
    def test_dispatch(self):
        self.assertEqual(decode(inp(b'{"a":1}'), "application/json; charset=utf-8"), {"a": 1})
        self.assertEqual(decode(inp(b'{"a":1}'), None), {"a": 1})
        self.assertEqual(decode(inp(b""), ""), {"inputs": ""})
        self.assertEqual(decode(inp(b"hi"), "text/plain"), {"inputs": ["hi"]})
        self.assertEqual(decode(inp(b"\x00\x01"), "application/octet-stream"), {"inputs": bytearray(b"\x00\x01")})
        self.assertEqual(decode(inp(b"a=b"), "application/x-www-form-urlencoded"), {"inputs": "a=b"})

    def test_csv_with_headers(self):
        self.assertEqual(decode(inp(b"inputs\nx\ny\n"), "text/csv"), {"inputs": ["x", "y"]})
        self.assertEqual(decode(inp(b"question,context\nq,c\n"), "text/csv"),
                         {"inputs": [{"question": "q", "context": "c"}]})
        with self.assertRaisesRegex(ValueError, "Header columns"):
            decode(inp(b"a,b\n1,2\n"), "text/csv")


class EncodeTest(unittest.TestCase):
    def test_json_and_csv(self):
        out = encode(Output(), [{"label": "POS"}], "*/*")
        self.assertEqual(out.properties["Content-Type"], "application/json")
        self.assertEqual(json.loads(bytes(out.content.value_at(0))), [{"label": "POS"}])
        out = encode(Output(), [{"a": 1, "b": 2}], "text/csv", batch_index=2)
        self.assertEqual(out.content.items(), [("batch_2.data", b"a,b\r\n1,2\r\n")])
        self.assertEqual(encode_csv([]), "")

    @unittest.skipUnless(HAS_NUMPY, "numpy is not installed for this Python")
    def test_ndlist_and_npz_round_trip(self):
        import numpy as np

        arrays = [np.arange(6, dtype=np.float32).reshape(2, 3), np.array([True, False])]
        out = encode(Output(), arrays, "tensor/ndlist")
        back = Input.from_frame({"content-type": "tensor/ndlist"}, [("data", out.content.value_at(0))]).get_data()
        self.assertEqual([a.tolist() for a in back], [a.tolist() for a in arrays])
        self.assertEqual(str(back[0].dtype), "float32")
        out = encode(Output(), arrays, "tensor/npz")
        back = Input.from_frame({"content-type": "tensor/npz"}, [("data", out.content.value_at(0))]).get_data()
        self.assertEqual([a.tolist() for a in back], [a.tolist() for a in arrays])


if __name__ == "__main__":
    unittest.main()
