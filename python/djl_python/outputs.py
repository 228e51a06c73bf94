"""Output: what a handler returns — the djl_python API of spec §5.5 — and how it goes on the wire.

Either plain content (a PairList of bytes) or a stream (a generator, optionally mapped through an
output_formatter), never both: send() writes a stream frame when stream content was set.
JSON bodies use DJL's layout (indent 2, no space after ':') because clients see them byte-for-byte.
"""

import json
import logging

from . import wire
from .pair_list import PairList


class _JSONEncoder(json.JSONEncoder):
    """Lets handlers return numpy scalars/arrays and datetimes without converting them first."""

    def default(self, o):
        import datetime

        if isinstance(o, datetime.datetime):
            return str(o)
        try:
            import numpy as np

            if isinstance(o, np.integer):
                return int(o)
            if isinstance(o, np.floating):
                return float(o)
            if isinstance(o, np.ndarray):
                return o.tolist()
        except ImportError:
            pass
        return super().default(o)


def to_json_bytes(value) -> bytes:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, indent=2, cls=_JSONEncoder,
                      separators=(",", ":")).encode("utf-8")


def to_bytes(value) -> bytes:
    """str -> UTF-8, bytes as-is, anything else -> JSON (the rule for content items and stream chunks)."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return to_json_bytes(value)


class Output:
    def __init__(self, code=200, message="OK"):
        self.code = code
        self.message = message
        self.properties = {}
        self.content = PairList()
        self.stream_content = None
        self.stream_output_formatter = None
        self._finalize = None

    def __str__(self):
        items = {str(self.content.key_at(i)): f"type: {type(self.content.value_at(i))}"
                 for i in range(self.content.size())}
        return json.dumps({"code": self.code, "message": self.message, "properties": self.properties,
                           "content": items}, indent=2)

    def set_code(self, code: int):
        self.code = code
        return self

    def set_message(self, message: str):
        self.message = message
        return self

    def error(self, error, code=424, message="invoke handler failure"):
        """Turns this Output into DJL's error reply: {"code","message","error"} as JSON."""
        self.code = code
        self.message = message
        self.add_property("content-type", "application/json")
        self.add_as_json({"code": code, "message": message, "error": str(error)})
        return self

    def add_property(self, key, val):
        self.properties[key] = val
        return self

    def add(self, value, key=None, batch_index=None):
        if key is not None and not isinstance(key, str):
            logging.warning("Output key should be str type, got %s", type(key))
            key = str(key)
        if batch_index is not None:
            key = f"batch_{int(batch_index)}.{key or 'data'}"
        self.content.add(key=key, value=to_bytes(value))
        return self

    def add_as_json(self, val, key=None, batch_index=None):
        return self.add(to_json_bytes(val), key=key, batch_index=batch_index)

    def add_as_string(self, val, key=None, batch_index=None):
        return self.add(str(val), key=key, batch_index=batch_index)

    def add_as_numpy(self, np_list, key=None, batch_index=None):
        from .np_util import to_nd_list

        return self.add(to_nd_list(np_list), key=key, batch_index=batch_index)

    def add_as_npz(self, np_list, key=None, batch_index=None):
        import io

        import numpy as np

        buf = io.BytesIO()
        np.savez(buf, *np_list)
        return self.add(buf.getvalue(), key=key, batch_index=batch_index)

    def add_stream_content(self, stream, output_formatter=None):
        """stream: any iterable (usually a generator); each item goes through output_formatter, if
        given, then str -> UTF-8, bytes as-is, other values -> JSON, one chunk per item."""
        self.stream_content = stream
        self.stream_output_formatter = output_formatter
        return self

    def finalize(self, fn, *args):
        """Runs fn(*args) after the reply has been sent (DJL uses it to release per-request state)."""
        self._finalize = (fn, args)
        return self

    @staticmethod
    def binary_encode(mapping: dict) -> bytes:
        return wire.binary_encode(mapping)

    def encode(self) -> bytes:
        if self.stream_content is not None:
            raise ValueError("a streaming Output is sent chunk by chunk with send(), not encode()")
        return wire.pack_output(self.code, self.message, self.properties, self.content.items())

    def send(self, conn):
        """Writes this Output; a stream is written chunk by chunk as the generator produces items. A
        generator that raises ends the stream with its message as the last chunk (spec §5.2)."""
        try:
            if self.stream_content is None:
                conn.sendall(self.encode())
                return
            conn.sendall(wire.pack_stream_start(self.code, self.message, self.properties))
            try:
                for item in self.stream_content:
                    if self.stream_output_formatter is not None:
                        item = self.stream_output_formatter(item)
                    conn.sendall(wire.pack_stream_chunk(to_bytes(item), True))
            except Exception as e:  # noqa: BLE001 — any handler error must end the stream, not the worker
                logging.exception("stream generator failed")
                conn.sendall(wire.pack_stream_chunk(str(e).encode("utf-8"), False))
                return
            conn.sendall(wire.pack_stream_chunk(b"", False))
        finally:
            if self._finalize is not None:
                fn, args = self._finalize
                fn(*args)
