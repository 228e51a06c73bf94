# Frames of the executor protocol, shared by every message in both directions.
# A frame is: u32 big-endian body length, u32 big-endian header length, the header as UTF-8 JSON, then an
# optional binary payload (body length - 4 - header length bytes). Invariant: a frame is read whole or
# not at all; a short read means the peer is gone (EOFError), never a partial message.
import json
import socket
import struct

_U32x2 = struct.Struct(">II")
MAX_FRAME_BYTES = 1 << 30


def encode_frame(header: dict, payload: bytes = b"") -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return _U32x2.pack(4 + len(head) + len(payload), len(head)) + head + payload


def decode_body(body: bytes) -> tuple:
    """Splits a frame body (everything after the first u32) into (header dict, payload bytes)."""
    (head_len,) = struct.unpack_from(">I", body, 0)
    if 4 + head_len > len(body):
        raise ValueError(f"frame header length {head_len} exceeds body length {len(body)}")
    header = json.loads(body[4 : 4 + head_len].decode("utf-8"))
    return header, body[4 + head_len :]


class FrameSocket:
    """Blocking frame reader/writer over a connected stream socket."""

    def __init__(self, sock: socket.socket):
        self.sock = sock

    def _read_exact(self, n: int) -> bytes:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self.sock.recv_into(view[got:], n - got)
            if k == 0:
                raise EOFError("executor socket closed by peer")
            got += k
        return bytes(buf)

    def read(self) -> tuple:
        (body_len,) = struct.unpack(">I", self._read_exact(4))
        if body_len < 4 or body_len > MAX_FRAME_BYTES:
            raise ValueError(f"bad frame length {body_len}")
        return decode_body(self._read_exact(body_len))

    def write(self, header: dict, payload: bytes = b"") -> None:
        self.sock.sendall(encode_frame(header, payload))
