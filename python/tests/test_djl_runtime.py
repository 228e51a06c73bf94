"""djl_python runtime tests (standard library only): Input/Output API, batch split, handler loading
and the engine's request handling (204 / 424 / 507 / fallback / syntax error)."""

import json
import logging
import os
import socket
import struct
import sys
import types
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))
FIXTURES = os.path.join(ROOT, "test", "fixtures", "handlers")
logging.disable(logging.CRITICAL)  # the engine logs handler tracebacks; the assertions check the replies

from djl_python import Input, Output, wire  # noqa: E402
from djl_python.np_util import parse_nd_list  # noqa: E402
from djl_python.service_loader import EntryPointError, load_model_service  # noqa: E402
from djl_python.sync_engine import PythonEngine  # noqa: E402


def make_input(props, content=()):
    return Input.from_frame(props, list(content))


def engine_for(model_dir, entry_point="model.py", recommended=""):
    args = types.SimpleNamespace(model_dir=model_dir, entry_point=entry_point, recommended_entry_point=recommended,
                                 device_id="0", cluster_size=1, tensor_parallel_degree=1,
                                 pipeline_parallel_degree=1, sock_type="unix", sock_name="unused")
    return PythonEngine(args)


def body(out: Output) -> dict:
    return json.loads(bytes(out.content.value_at(0)))


class InputTest(unittest.TestCase):
    def test_property_lookup_is_case_insensitive(self):
        inp = make_input({"Content-Type": "application/json"}, [("data", b'{"a": 1}')])
        self.assertEqual(inp.get_property("content-type"), "application/json")
        self.assertEqual(inp.get_data(), {"a": 1})

    def test_default_key_is_data_then_first(self):
        inp = make_input({}, [("x", b"first"), ("data", b"named")])
        self.assertEqual(inp.get_as_string(), "named")
        self.assertEqual(make_input({}, [("x", b"first")]).get_as_string(), "first")
        with self.assertRaises(KeyError):
            inp.get_as_bytes("missing")

    def test_get_data_dispatch(self):
        self.assertEqual(make_input({"content-type": "text/plain; charset=utf-8"}, [("data", b"hi")]).get_data(), "hi")
        csv_in = make_input({"content-type": "text/csv"}, [("data", b"a,b\n1,2\n")])
        self.assertEqual(csv_in.get_data(), [{"a": "1", "b": "2"}])
        self.assertEqual(make_input({}, [("data", b"\x00")]).get_data(), bytearray(b"\x00"))
        self.assertIsNone(make_input({}).get_data())

    def test_get_batches_splits_properties_and_content(self):
        inp = make_input({"batch_size": "2", "handler": "handle", "batch_000.content-type": "text/plain",
                          "batch_001.content-type": "application/json"},
                         [("batch_000.data", b"a"), ("batch_001.data", b"[1]")])
        self.assertTrue(inp.is_batch())
        batches = inp.get_batches()
        self.assertEqual([b.get_data() for b in batches], ["a", [1]])
        self.assertEqual(batches[1].get_function_name(), "handle")

    def test_get_batches_rejects_unprefixed_content(self):
        with self.assertRaises(ValueError):
            make_input({"batch_size": "1"}, [("data", b"a")]).get_batches()

    def test_ndlist_parse(self):
        def s16(v):
            return struct.pack(">h", len(v)) + v.encode()
        raw = struct.pack("<2i", 7, -1)
        data = (struct.pack(">i", 1) + s16("NDAR") + struct.pack(">i", 3) + b"\x00" + s16("default") + s16("INT32")
                + struct.pack(">iq", 1, 2) + struct.pack(">ih", 1, ord("?")) + b"<" + struct.pack(">i", 8) + raw)
        self.assertEqual(parse_nd_list(data), [(None, "INT32", (2,), "<", raw)])
        with self.assertRaises(ValueError):
            parse_nd_list(data[:-1])


class OutputTest(unittest.TestCase):
    def test_error_body_and_layout(self):
        out = Output().error("boom")
        self.assertEqual((out.code, out.message), (424, "invoke handler failure"))
        self.assertEqual(out.properties["content-type"], "application/json")
        self.assertEqual(bytes(out.content.value_at(0)),
                         b'{\n  "code":424,\n  "message":"invoke handler failure",\n  "error":"boom"\n}')

    def test_add_encodes_by_type_and_batch_index(self):
        out = Output().add("é").add(b"\x01", key="raw").add({"k": [1]}, key="data", batch_index=3)
        self.assertEqual(out.content.items(), [(None, "é".encode()), ("raw", b"\x01"),
                                               ("batch_3.data", b'{\n  "k":[\n    1\n  ]\n}')])

    def test_stream_send_with_formatter_and_failure(self):
        def gen():
            yield "a"
            yield 2
            raise RuntimeError("broken")

        a, b = socket.socketpair()
        try:
            out = Output().add_stream_content(gen(), output_formatter=lambda x: f"<{x}>")
            finalized = []
            out.finalize(finalized.append, "done")
            out.send(a)
            a.close()
            expected = (wire.pack_stream_start(200, "OK", {}) + wire.pack_stream_chunk(b"<a>", True)
                        + wire.pack_stream_chunk(b"<2>", True) + wire.pack_stream_chunk(b"broken", False))
            self.assertEqual(wire.read_exact(b, len(expected)), expected)
            self.assertEqual(finalized, ["done"])
        finally:
            b.close()


class EngineLoopTest(unittest.TestCase):
    """PythonEngine.run over a real Unix socket: init, a request, an unencodable reply, then EOF."""

    def test_run_serves_until_the_connection_closes(self):
        import tempfile
        import threading
        import time

        sock_path = os.path.join(tempfile.mkdtemp(), "sock")
        eng = engine_for(os.path.join(FIXTURES, "echo"))
        eng.args.sock_name = sock_path
        eng._exit_with_parent = lambda: None  # the test process is the parent; nothing to watch
        result = {}
        thread = threading.Thread(target=lambda: result.setdefault("rc", eng.run()))
        thread.start()
        for _ in range(200):
            if os.path.exists(sock_path):
                break
            time.sleep(0.01)
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(sock_path)

        def roundtrip(props, content):
            client.sendall(wire.pack_input(props, content))
            code = struct.unpack(">h", wire.read_exact(client, 2))[0]
            message = wire.read_utf8(client)
            props_out = {wire.read_utf8(client): wire.read_utf8(client) for _ in range(wire.read_short(client))}
            items = [(wire.read_utf8(client), wire.read_exact(client, wire.read_int(client)))
                     for _ in range(wire.read_short(client))]
            return code, message, props_out, items

        self.assertEqual(roundtrip({"handler": "handle"}, [])[:2], (204, "No content"))
        code, _, props, items = roundtrip({"handler": "handle", "content-type": "text/plain"}, [("data", b"hey")])
        self.assertEqual((code, items), (200, [("data", b"hey")]))
        code, _, _, items = roundtrip({"handler": "handle", "bad_output": "1"}, [("data", b"x")])
        self.assertEqual(code, 424)
        self.assertIn("cannot encode the handler's reply", json.loads(items[0][1])["error"])
        self.assertEqual(roundtrip({"handler": "handle"}, [("data", b"still alive")])[3], [("data", b"still alive")])
        client.close()
        thread.join(timeout=5)
        self.assertEqual(result.get("rc"), 0)
        self.assertFalse(os.path.exists(sock_path), "the socket file is removed on exit")


class LoaderAndEngineTest(unittest.TestCase):
    def test_echo_init_then_request(self):
        eng = engine_for(os.path.join(FIXTURES, "echo"))
        init = eng.handle(make_input({"model_id": "m1", "handler": "handle"}))
        self.assertEqual((init.code, init.message), (204, "No content"))
        out = eng.handle(make_input({"content-type": "text/plain"}, [("data", b"hello")]))
        self.assertEqual((out.code, out.content.items()), (200, [("data", b"hello")]))
        self.assertEqual(out.properties["x-model-id"], "m1")

    def test_legacy_bare_imports_share_djl_python_classes(self):
        from djl_python.service_loader import install_legacy_aliases

        install_legacy_aliases(os.path.join(FIXTURES, "legacy_imports"))
        eng = engine_for(os.path.join(FIXTURES, "legacy_imports"))
        self.assertEqual(eng.handle(make_input({})).code, 204)
        eng.handle(make_input({}, [("data", b"abc")]))
        out = eng.handle(make_input({}, [("data", b"de")]))
        self.assertEqual((out.code, body(out)), (200, {"total": 5}))

    def test_async_handle_is_awaited_on_one_loop(self):
        import tempfile

        d = tempfile.mkdtemp()
        with open(os.path.join(d, "model.py"), "w") as f:
            f.write("import asyncio\nfrom djl_python import Output\nloops = set()\n\n"
                    "async def handle(inputs):\n"
                    "    loops.add(id(asyncio.get_running_loop()))\n"
                    "    await asyncio.sleep(0)\n"
                    "    return None if inputs.is_empty() else Output().add(str(len(loops)))\n")
        eng = engine_for(d)
        self.assertEqual(eng.handle(make_input({})).code, 204)
        out = eng.handle(make_input({}, [("data", b"x")]))
        self.assertEqual(out.content.items(), [(None, b"1")], "both calls ran on the same event loop")

    def test_handler_exception_is_424_with_message(self):
        eng = engine_for(os.path.join(FIXTURES, "echo"))
        out = eng.handle(make_input({"exception": "bad"}, [("data", b"x")]))
        self.assertEqual(out.code, 424)
        self.assertEqual(body(out)["error"], "model error: bad")

    def test_oom_at_load_is_507(self):
        eng = engine_for(os.path.join(FIXTURES, "oom_load"))
        out = eng.handle(make_input({}))
        self.assertEqual(out.code, 507)
        self.assertIn("80 GiB", body(out)["error"])

    def test_syntax_error_names_file_and_line(self):
        with self.assertRaises(EntryPointError) as ctx:
            load_model_service("model.py", os.path.join(FIXTURES, "syntax_error"))
        self.assertRegex(str(ctx.exception), r"syntax error in .*model\.py, line 4")
        out = engine_for(os.path.join(FIXTURES, "syntax_error")).handle(make_input({}))
        self.assertEqual(out.code, 424)
        self.assertIn("syntax error", body(out)["error"])

    def test_missing_handle_falls_back_to_recommended(self):
        rec = os.path.join(FIXTURES, "echo", "model.py")
        eng = engine_for(os.path.join(FIXTURES, "no_handle"), recommended=rec)
        self.assertEqual(eng.handle(make_input({})).code, 204)
        self.assertEqual(eng.handle(make_input({}, [("data", b"z")])).content.items(), [("data", b"z")])

    def test_missing_handle_without_fallback_is_clear(self):
        out = engine_for(os.path.join(FIXTURES, "no_handle")).handle(make_input({}))
        self.assertEqual(out.code, 424)
        self.assertIn("has no function 'handle'", body(out)["error"])

    def test_missing_entry_point_module(self):
        out = engine_for(FIXTURES, entry_point="no_such_module_xyz").handle(make_input({}))
        self.assertIn("'no_such_module_xyz' not found", body(out)["error"])

    def test_non_output_return_is_invalid_output_type(self):
        eng = engine_for(FIXTURES)
        eng.service = types.SimpleNamespace(has_function=lambda n: True, invoke_handler=lambda n, i: "str",
                                            entry_point="x")
        out = eng.handle(make_input({}, [("data", b"x")]))
        self.assertEqual((out.code, body(out)["error"]), (424, "Invalid output type"))


if __name__ == "__main__":
    unittest.main()
