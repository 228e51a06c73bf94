"""DJL NDList binary format (content type `tensor/ndlist`) <-> numpy arrays.

Layout per array: str16 "NDAR", int32 version 3, int8 has-name (+ str16 name), str16 sparse format,
str16 dtype (DJL names, e.g. FLOAT32), int32 ndim + int64 dims + int32 layout length + int16 chars,
int8 byte-order char, int32 data length + bytes; the list starts with an int32 count. Big-endian
headers. The structural parser is standard library only; numpy is imported only to build arrays.
"""

import struct

MAGIC = "NDAR"
VERSION = 3
_DTYPE_TO_NUMPY = {"BOOLEAN": "bool", "BOOL": "bool"}


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(f"NDList truncated: need {n} bytes at offset {self.pos}, have {len(self.data) - self.pos}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def str16(self) -> str:
        return self.take(self.unpack(">h")).decode("utf-8")


def parse_nd_list(encoded: bytes) -> list:
    """Returns [(name, dtype, shape, byte_order, raw_bytes)] without needing numpy."""
    r = _Reader(bytes(encoded))
    arrays = []
    for _ in range(r.unpack(">i")):
        magic = r.str16()
        if magic != MAGIC:
            raise ValueError(f"not a DJL NDList: magic is {magic!r}, expected {MAGIC!r}")
        version = r.unpack(">i")
        if version != VERSION:
            raise ValueError(f"NDList version {version} is not supported (expected {VERSION})")
        name = r.str16() if r.unpack(">b") == 1 else None
        r.str16()  # sparse format; only dense arrays exist in practice
        dtype = r.str16()
        shape = tuple(r.unpack(">q") for _ in range(r.unpack(">i")))
        for _ in range(r.unpack(">i")):
            r.take(2)  # layout characters carry no information numpy needs
        order = chr(r.unpack(">b"))
        data = r.take(r.unpack(">i"))
        arrays.append((name, dtype, shape, order, data))
    return arrays


def from_nd_list(encoded: bytes) -> list:
    import io

    import numpy as np

    if encoded[:2] == b"PK":  # DJL accepts npz under the ndlist content type too
        npz = np.load(io.BytesIO(encoded), allow_pickle=False)
        return [npz[name] for name in npz.files]
    result = []
    for _name, dtype, shape, order, data in parse_nd_list(encoded):
        np_dtype = np.dtype(_DTYPE_TO_NUMPY.get(dtype.upper(), dtype.lower())).newbyteorder(order)
        result.append(np.frombuffer(data, dtype=np_dtype).reshape(shape))
    return result


def _str16(value: str) -> bytes:
    raw = value.encode("utf-8")
    return struct.pack(">h", len(raw)) + raw


def to_nd_list(np_list) -> bytes:
    import numpy as np

    if not isinstance(np_list, (list, tuple)):
        np_list = [np_list]
    parts = [struct.pack(">i", len(np_list))]
    for nd in np_list:
        nd = np.ascontiguousarray(nd)
        dtype = "BOOLEAN" if nd.dtype == np.bool_ else str(nd.dtype).upper()
        raw = nd.astype(nd.dtype.newbyteorder("<")).tobytes("C")
        parts += [_str16(MAGIC), struct.pack(">i", VERSION), b"\x00", _str16("default"), _str16(dtype),
                  struct.pack(">i", nd.ndim), b"".join(struct.pack(">q", d) for d in nd.shape),
                  struct.pack(">i", nd.ndim), b"".join(struct.pack(">h", ord("?")) for _ in nd.shape),
                  b"<", struct.pack(">i", len(raw)), raw]
    return b"".join(parts)
