# Reads Hugging Face safetensors checkpoints without the safetensors package (Debian has none): header
# parse + mmap, one shard at a time, each tensor handed to the model as a zero-copy CPU view that the
# model slices (tensor parallelism) and copies straight into its preallocated device parameters.
# Invariant: peak host memory is one mmap'd shard's pages, never a full copy of the checkpoint.
# SafetensorsFile gives random access by name (reshard.py reads T part files side by side); SafetensorsWriter
# streams a file whose header is declared up front (shard_checkpoint.py writes T parts side by side).
import json
import mmap
import os
import struct

import torch

_DTYPES = {
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F64": torch.float64,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def _itemsize(dtype) -> int:
    # torch 1.13 (Debian, CI) has no dtype.itemsize
    return torch.empty((), dtype=dtype).element_size()


def checkpoint_files(model_dir: str) -> list:
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index, encoding="utf-8") as f:
            weight_map = json.load(f)["weight_map"]
        return [os.path.join(model_dir, name) for name in sorted(set(weight_map.values()))]
    files = sorted(n for n in os.listdir(model_dir) if n.endswith(".safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors files in {model_dir}")
    return [os.path.join(model_dir, n) for n in files]


def read_header(path: str) -> tuple:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n).decode("utf-8"))
    header.pop("__metadata__", None)
    return header, 8 + n


class SafetensorsFile:
    """One safetensors file: its header up front, tensors on demand as zero-copy views over a private mmap.
    Nothing is read until a view's pages are touched, so opening many files costs address space only."""

    def __init__(self, path: str):
        self.path = path
        self.header, self._data_start = read_header(path)
        self._mm = None

    def names(self) -> list:
        return list(self.header)

    def dtype(self, name: str):
        info = self.header[name]
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"{self.path}: tensor {name} has unsupported dtype {info['dtype']}")
        return dtype

    def shape(self, name: str) -> list:
        return list(self.header[name]["shape"])

    def tensor(self, name: str) -> torch.Tensor:
        if name not in self.header:
            raise KeyError(f"{self.path}: no tensor {name}")
        dtype, shape = self.dtype(name), self.shape(name)
        begin, end = self.header[name]["data_offsets"]
        if end == begin:
            return torch.empty(shape, dtype=dtype)
        if self._mm is None:
            with open(self.path, "rb") as f:
                # ACCESS_COPY: writable (torch.frombuffer wants that) but copy-on-write, so nothing is read eagerly.
                self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        count = (end - begin) // _itemsize(dtype)
        return torch.frombuffer(self._mm, dtype=dtype, offset=self._data_start + begin, count=count).view(shape)


def iter_safetensors(path: str):
    """Yields (name, tensor) for one file; tensors are views over a private mmap of the file."""
    f = SafetensorsFile(path)
    for name in f.names():
        yield name, f.tensor(name)


def iter_checkpoint(model_dir: str):
    for path in checkpoint_files(model_dir):
        yield from iter_safetensors(path)


_DTYPE_NAMES = {v: k for k, v in _DTYPES.items()}


def dtype_name(dtype) -> str:
    """The safetensors spelling of a torch dtype (F32, BF16, ...)."""
    return _DTYPE_NAMES[dtype]


class SafetensorsWriter:
    """Writes a safetensors file whose tensors (name, dtype, shape) are declared up front, then streamed one at a
    time in that order, so the writer never holds more than the tensor being written."""

    def __init__(self, path: str, specs: list):
        self.path, self._order, self._next = path, [], 0
        header, offset = {}, 0
        for name, dtype, shape in specs:
            n = _itemsize(dtype)
            for d in shape:
                n *= int(d)
            header[name] = {"dtype": _DTYPE_NAMES[dtype], "shape": [int(d) for d in shape],
                            "data_offsets": [offset, offset + n]}
            self._order.append((name, dtype, tuple(int(d) for d in shape)))
            offset += n
        head = json.dumps(header).encode("utf-8")
        head += b" " * ((8 - len(head) % 8) % 8)
        self._f = open(path, "wb")
        self._f.write(struct.pack("<Q", len(head)))
        self._f.write(head)

    def write(self, name: str, t: torch.Tensor) -> None:
        want, dtype, shape = self._order[self._next]
        if name != want or t.dtype != dtype or tuple(t.shape) != shape:
            raise ValueError(f"{self.path}: expected {want} {dtype} {list(shape)} next, "
                             f"got {name} {t.dtype} {list(t.shape)}")
        if t.numel():
            self._f.write(t.contiguous().cpu().reshape(-1).view(torch.uint8).numpy())
        self._next += 1

    def close(self) -> None:
        self._f.close()
        if self._next != len(self._order):
            raise ValueError(f"{self.path}: {len(self._order) - self._next} declared tensors were never written")


def write_safetensors(path: str, tensors: dict) -> None:
    """Writes a safetensors file (tests build fixtures with it; mirrors the reader's layout)."""
    w = SafetensorsWriter(path, [(name, t.dtype, list(t.shape)) for name, t in tensors.items()])
    for name, t in tensors.items():
        w.write(name, t)
    w.close()
