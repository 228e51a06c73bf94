"""DJL binary protocol primitives (spec §5.2): big-endian, utf8 = int32 length (-1 = None) + bytes.

Owns reading an Input frame from a socket and writing Output frames (plain or streamed); nothing
else in the package touches struct layouts. Invariant: a frame is written with one sendall, so a
reader never sees half a header; stream chunks are each one sendall too.
"""

import struct

MAX_ITEM_SIZE = 20 * 1024 * 1024  # MAX_NETTY_BUFFER_SIZE default; one content item may not exceed it


class ConnectionClosed(EOFError):
    """The peer closed the socket (normal at shutdown between frames)."""


def read_exact(conn, length: int) -> bytes:
    chunks = []
    remaining = length
    while remaining > 0:
        pkt = conn.recv(min(remaining, 1 << 20))
        if not pkt:
            raise ConnectionClosed("Connection disconnected")
        chunks.append(pkt)
        remaining -= len(pkt)
    return b"".join(chunks)


def read_int(conn) -> int:
    return struct.unpack(">i", read_exact(conn, 4))[0]


def read_short(conn) -> int:
    return struct.unpack(">h", read_exact(conn, 2))[0]


def read_utf8(conn):
    length = read_int(conn)
    if length < 0:
        return None
    return read_exact(conn, length).decode("utf-8")


def read_input_frame(conn):
    """Returns (properties dict, [(key, bytes)]) for one Input frame."""
    properties = {}
    for _ in range(read_short(conn)):
        key = read_utf8(conn)
        properties[key] = read_utf8(conn) or ""
    content = []
    for _ in range(read_short(conn)):
        key = read_utf8(conn)
        length = read_int(conn)
        if length < 0 or length > MAX_ITEM_SIZE:
            raise ValueError(f"content item '{key}' has invalid length {length}")
        content.append((key, read_exact(conn, length)))
    return properties, content


def pack_utf8(value) -> bytes:
    if value is None:
        return struct.pack(">i", -1)
    raw = str(value).encode("utf-8")
    return struct.pack(">i", len(raw)) + raw


def pack_output_header(code: int, message, properties: dict) -> bytes:
    parts = [struct.pack(">h", int(code)), pack_utf8(message), struct.pack(">h", len(properties))]
    for key, value in properties.items():
        parts.append(pack_utf8(key))
        parts.append(pack_utf8(value))
    return b"".join(parts)


def pack_output(code: int, message, properties: dict, content) -> bytes:
    """A complete non-streaming Output frame; content is a list of (key, bytes)."""
    parts = [pack_output_header(code, message, properties), struct.pack(">h", len(content))]
    for key, value in content:
        if len(value) > MAX_ITEM_SIZE:
            raise ValueError(f"output item '{key}' is {len(value)} bytes, over the {MAX_ITEM_SIZE} byte limit")
        parts.append(pack_utf8(key))
        parts.append(struct.pack(">i", len(value)))
        parts.append(bytes(value))
    return b"".join(parts)


def pack_stream_start(code: int, message, properties: dict) -> bytes:
    return pack_output_header(code, message, properties) + struct.pack(">h", -1)


def pack_stream_chunk(data: bytes, more: bool) -> bytes:
    """more=True: chunks follow; more=False: last chunk (normal end carries an empty one)."""
    return struct.pack(">bi", 1 if more else 0, len(data)) + bytes(data)


def pack_input(properties: dict, content) -> bytes:
    """Encodes an Input frame; used by tests and tools to speak to a worker like the server does."""
    parts = [struct.pack(">h", len(properties))]
    for key, value in properties.items():
        parts.append(pack_utf8(key))
        parts.append(pack_utf8(value))
    parts.append(struct.pack(">h", len(content)))
    for key, value in content:
        parts.append(pack_utf8(key))
        parts.append(struct.pack(">i", len(value)))
        parts.append(bytes(value))
    return b"".join(parts)


def binary_encode(mapping: dict) -> bytes:
    """int16 count + (utf8 key, utf8 str(value))*, as used for rolling-batch items (spec §5.2)."""
    parts = [struct.pack(">h", len(mapping))]
    for key, value in mapping.items():
        parts.append(pack_utf8(key))
        parts.append(pack_utf8(str(value)))
    return b"".join(parts)
