# Writes a tensor-parallel checkpoint "saved at degree T" from a Hugging Face model folder: one safetensors file per
# saved rank (Hugging Face tensor names, that rank's slice of every split tensor, replicated tensors whole) plus a
# checkpoint JSON recording every tensor's full shape and split (reshard.py reads it; see docs/gpu-executor.md).
# The non-weight files (config.json, tokenizer, generation_config.json, ...) are copied, so DST_DIR is a complete
# model directory. Invariants: the whole layout is computed and checked from the source headers before anything
# is written; tensors are streamed one at a time from the mmap'd source; the JSON is written last, so a folder
# without it is an interrupted run.
import argparse
import json
import os
import shutil
import sys

from .config import load_model_config
from .loader import SafetensorsFile, SafetensorsWriter, checkpoint_files, dtype_name
from .reshard import (DEFAULT_JSON, FORMAT_TYPE, FORMAT_VERSION, SKIP, Split, UnknownTensor, check_divisible,
                      split_part, tensor_split)

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf")
_WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def part_name(t: int, T: int) -> str:
    return f"tp-rank-{t:02d}-of-{T:02d}.safetensors"


def plan(src: str, T: int):
    """[(name, source file, full shape, dtype, split)] for every tensor to write, validated against T."""
    cfg = load_model_config(src)  # unknown architectures fail here, by name
    check_divisible(cfg, T, "--tp")
    files = [SafetensorsFile(p) for p in checkpoint_files(src)]
    out, seen = [], {}
    for f in files:
        for name in f.names():
            if name in seen:
                raise ValueError(f"tensor {name} appears in both {seen[name]} and {f.path}")
            seen[name] = f.path
            shape, dtype = f.shape(name), f.dtype(name)
            try:
                split = tensor_split(cfg, name, shape, T)
            except UnknownTensor as e:
                raise ValueError(f"{f.path}: {e}") from None
            if split is SKIP:
                continue
            if split is not None:
                if split.axis >= len(shape) or sum(split.sections) != shape[split.axis]:
                    raise ValueError(f"{f.path}: tensor {name} has shape {shape}, expected {sum(split.sections)} along "
                                     f"axis {split.axis} (sections {list(split.sections)}) from config.json")
                bad = [s for s in split.sections if s % T]
                if bad:
                    raise ValueError(f"{f.path}: tensor {name}: size(s) {bad} along axis {split.axis} are not "
                                     f"divisible by --tp {T}")
            out.append((name, f, shape, dtype, split))
    return cfg, out


def shard(src: str, dst: str, T: int, log=print) -> str:
    """Writes the checkpoint into dst (which must not exist or be empty); returns the JSON's path."""
    if T < 1:
        raise ValueError(f"--tp must be at least 1, got {T}")
    if not os.path.isfile(os.path.join(src, "config.json")):
        raise FileNotFoundError(f"{src} has no config.json (expected a Hugging Face model folder)")
    cfg, tensors = plan(src, T)
    if os.path.exists(dst) and (not os.path.isdir(dst) or os.listdir(dst)):
        raise FileExistsError(f"{dst} exists and is not an empty directory")
    os.makedirs(dst, exist_ok=True)
    # All T parts are written side by side, so each source tensor is read once.
    writers = []
    for t in range(T):
        specs = []
        for name, _f, shape, dtype, split in tensors:
            part_shape = list(shape)
            if split is not None:
                part_shape[split.axis] //= T
            specs.append((name, dtype, part_shape))
        writers.append(SafetensorsWriter(os.path.join(dst, part_name(t, T)), specs))
    for name, f, _shape, _dtype, split in tensors:
        full = f.tensor(name)
        for t, w in enumerate(writers):
            w.write(name, split_part(full, split, T, t))
        del full
    for w in writers:
        w.close()
    log(f"wrote {T} part(s) {part_name(0, T)} .. {part_name(T - 1, T)}")
    copied = []
    for n in sorted(os.listdir(src)):
        p = os.path.join(src, n)
        if os.path.isfile(p) and not n.endswith(_WEIGHT_SUFFIXES) and n not in _WEIGHT_INDEXES:
            shutil.copy2(p, os.path.join(dst, n))
            copied.append(n)
    replicated = [name for name, *_rest, split in tensors if split is None]
    doc = {
        "type": FORMAT_TYPE,
        "version": FORMAT_VERSION,
        "parallelization": "tp",
        "tp_size": T,
        "architecture": cfg.architecture,
        "checkpoints": [part_name(t, T) for t in range(T)],
        "tensors": {
            name: {"shape": list(shape), "dtype": dtype_name(dtype),
                   "split": split.to_json() if isinstance(split, Split) else None}
            for name, _f, shape, dtype, split in tensors
        },
    }
    path = os.path.join(dst, DEFAULT_JSON)
    head = json.dumps({k: v for k, v in doc.items() if k != "tensors"}, indent=1)
    rows = ",\n".join(f"  {json.dumps(n)}: {json.dumps(e)}" for n, e in doc["tensors"].items())
    with open(path + ".tmp", "w", encoding="utf-8") as fh:  # one line per tensor, so the JSON stays readable
        fh.write(head[: head.rindex("}")].rstrip() + ',\n "tensors": {\n' + rows + "\n }\n}\n")
    os.replace(path + ".tmp", path)
    log(f"wrote {DEFAULT_JSON}: {cfg.architecture}, tp_size={T}, {len(tensors)} tensors "
        f"({len(replicated)} replicated); copied {', '.join(copied) or 'no other files'}")
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python3 -m lmi_executor.shard_checkpoint",
        description="Write a tensor-parallel checkpoint saved at degree T from a Hugging Face model folder "
                    "(config.json + *.safetensors): one safetensors file per rank holding that rank's slice of every "
                    f"tensor, and {DEFAULT_JSON} recording each tensor's split. Serve it with "
                    f"option.model_id=DST_DIR, option.checkpoint={DEFAULT_JSON} (or '.') and "
                    "option.training_mp_size=T; "
                    "the executor re-shards it at load to any option.tensor_parallel_degree the model allows.",
    )
    ap.add_argument("src", metavar="SRC_DIR", help="Hugging Face model folder (config.json and *.safetensors)")
    ap.add_argument("dst", metavar="DST_DIR", help="output folder; must not exist or be empty")
    ap.add_argument("--tp", type=int, required=True, metavar="T",
                    help="tensor-parallel degree to save at; attention heads, KV heads and the MLP intermediate size "
                         "must divide by it (a vocabulary that does not is kept whole in every part)")
    a = ap.parse_args(argv)
    try:
        shard(a.src, a.dst, a.tp)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError) as e:
        sys.stderr.write(f"shard_checkpoint: error: {e}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
