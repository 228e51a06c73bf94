# Reads Hugging Face safetensors checkpoints without the safetensors package (Debian has none): header
# parse + mmap, one shard at a time, each tensor handed to the model as a zero-copy CPU view that the
# model slices (tensor parallelism) and copies straight into its preallocated device parameters.
# Invariant: peak host memory is one mmap'd shard's pages, never a full copy of the checkpoint.
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


def iter_safetensors(path: str):
    """Yields (name, tensor) for one file; tensors are views over a private mmap of the file."""
    header, data_start = read_header(path)
    with open(path, "rb") as f:
        # ACCESS_COPY: writable (torch.frombuffer wants that) but copy-on-write, so nothing is read eagerly.
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    for name, info in header.items():
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        begin, end = info["data_offsets"]
        shape = list(info["shape"])
        if end == begin:
            yield name, torch.empty(shape, dtype=dtype)
            continue
        flat = torch.frombuffer(mm, dtype=dtype, offset=data_start + begin, count=(end - begin) // _itemsize(dtype))
        yield name, flat.view(shape)


def iter_checkpoint(model_dir: str):
    for path in checkpoint_files(model_dir):
        yield from iter_safetensors(path)


def write_safetensors(path: str, tensors: dict) -> None:
    """Writes a safetensors file (used by tests to build fixtures; mirrors the reader's layout)."""
    names = {v: k for k, v in _DTYPES.items()}
    header, offset, blobs = {}, 0, []
    for name, t in tensors.items():
        t = t.contiguous().cpu()
        raw = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode("utf-8")
    head += b" " * ((8 - len(head) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for b in blobs:
            f.write(b)
