# Tensor-parallel checkpoints "saved at degree T" (written by shard_checkpoint.py) and re-sharding them at load
# to the executor's degree D. A checkpoint is a JSON file shaped like DeepSpeed's checkpoint JSON plus, per tensor,
# its full shape and how it was split; part t (one safetensors file per saved rank, Hugging Face tensor names)
# holds rank t's slice of every split tensor and a full copy of every replicated one.
# Invariants: the loader never infers a split from shapes, it reads the recorded one; every file, tensor, shape
# and dtype is checked against the JSON before any weight is loaded; at most one tensor is materialised at a time
# (the parts are mmap views), and a rank reads only the parts overlapping the slice its model keeps.
# tensor_split() is the one table of how every supported family splits each Hugging Face tensor for tensor
# parallelism: the models take their rank's part of every tensor through local_part() and only place it (the
# re-sharding tests load with everything a rank does not read set to NaN, so a disagreement fails them).
import json
import math
import os
import re
import sys
from dataclasses import dataclass

import torch

from .config import ExecutorOptions, ModelConfig
from .loader import SafetensorsFile, iter_checkpoint
from .parallel import shares_kv_heads

FORMAT_TYPE = "lmi-tp-safetensors"
FORMAT_VERSION = 1.0
DEFAULT_JSON = "ds_inference_config.json"  # the name DeepSpeed's save_mp_checkpoint_path gives its JSON

# Tests set this: whatever a rank does not read of a tensor is NaN instead of uninitialised memory.
POISON_UNREAD = False


@dataclass(frozen=True)
class Split:
    """Split along `axis` into T equal parts; a pre-fused tensor is several `sections` (sizes along the axis) each
    split into T parts, and part t is the concatenation of every section's t-th piece. `pieces`, on the model's
    side only (never recorded in a checkpoint): how many pieces each section is cut into where that is fewer
    than the ranks (KV heads fewer than the ranks): rank t of T then keeps piece t * pieces // T, shared with
    its neighbours."""

    axis: int
    sections: tuple
    pieces: tuple = None

    def to_json(self) -> dict:
        return {"axis": self.axis, "sections": list(self.sections)}

    def bounds(self, i: int, T: int, rank: int) -> tuple:
        """[start, end) within section i of what rank `rank` of T keeps."""
        p = self.pieces[i] if self.pieces else T
        n = self.sections[i] // p
        k = rank * p // T
        return k * n, (k + 1) * n


SKIP = "skip"  # buffers some checkpoints carry that no model reads (causal masks, rotary inv_freq)


class UnknownTensor(ValueError):
    pass


# ---- the layout table ------------------------------------------------------------------------------------------

_LLAMA_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
_EXPERT = re.compile(r"^block_sparse_moe\.experts\.\d+\.(w1|w2|w3)\.weight$")
_GPT_LAYER = re.compile(r"^(?:h|layers)\.(\d+)\.(.+)$")


def _gpt_name(name: str) -> str:
    return name.removeprefix("transformer.").removeprefix("gpt_neox.")


def _vocab(n: int, T: int):
    # An embedding / LM head whose vocabulary does not divide is kept whole on every rank (as the models do).
    return Split(0, (n,)) if n % T == 0 else None


def tensor_split(cfg: ModelConfig, name: str, shape: list, T: int):
    """How tensor `name` of full shape `shape` is split over T ranks: a Split, None (replicated) or SKIP."""
    hd, nh, nkv, inter = cfg.head_dim, cfg.num_heads, cfg.num_kv_heads, cfg.intermediate_size
    if name.endswith("rotary_emb.inv_freq"):
        return SKIP
    if cfg.model_type in ("gpt2", "gpt_neox"):
        return _gpt_split(cfg, _gpt_name(name), shape, T, name)
    if name in ("model.embed_tokens.weight", "lm_head.weight"):
        return _vocab(shape[0], T)
    if name == "model.norm.weight":
        return None
    m = _LLAMA_LAYER.match(name)
    rest = m.group(2) if m else ""
    # Fewer KV heads than ranks (the ranks dividing evenly over them): K and V are cut into one piece per KV head,
    # each kept by the ranks whose query heads read it (parallel.TensorParallel.kv_heads).
    kv = (nkv,) if shares_kv_heads(nkv, T) else None
    table = {
        "self_attn.q_proj": Split(0, (nh * hd,)),
        "self_attn.k_proj": Split(0, (nkv * hd,), kv),
        "self_attn.v_proj": Split(0, (nkv * hd,), kv),
        # Phi-3: q|k|v fused in the checkpoint
        "self_attn.qkv_proj": Split(0, (nh * hd, nkv * hd, nkv * hd), kv and (T, nkv, nkv)),
        "self_attn.o_proj": Split(1, (nh * hd,)),
        "mlp.gate_proj": Split(0, (inter,)),
        "mlp.up_proj": Split(0, (inter,)),
        "mlp.gate_up_proj": Split(0, (inter, inter)),  # Phi-3: gate|up fused
        "mlp.down_proj": Split(1, (inter,)),
    }
    base, _, kind = rest.rpartition(".")
    if base in table and kind in ("weight", "bias") and not (kind == "bias" and table[base].axis == 1):
        s = table[base]
        return Split(0, s.sections, s.pieces) if kind == "bias" else s
    em = _EXPERT.match(rest)
    if em:  # Mixtral: each expert's intermediate size is split like a dense MLP's
        return Split(1 if em.group(1) == "w2" else 0, (inter,))
    if rest in ("input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.q_norm.weight",
                "self_attn.k_norm.weight", "block_sparse_moe.gate.weight"):
        return None
    raise UnknownTensor(f"tensor {name} is not a known {cfg.architecture} weight")


def _gpt_split(cfg: ModelConfig, name: str, shape: list, T: int, full_name: str):
    H, inter = cfg.hidden_size, cfg.intermediate_size
    if name in ("wte.weight", "embed_in.weight", "lm_head.weight", "embed_out.weight"):
        return _vocab(shape[0], T)
    if name in ("wpe.weight", "ln_f.weight", "ln_f.bias", "final_layer_norm.weight", "final_layer_norm.bias"):
        return None
    m = _GPT_LAYER.match(name)
    rest = m.group(2) if m else ""
    if rest in ("attn.bias", "attn.masked_bias", "attention.bias", "attention.masked_bias"):
        return SKIP
    table = {
        # GPT-2 Conv1D weights are stored [in, out]: column-parallel layers split axis 1, row-parallel axis 0.
        "attn.c_attn.weight": Split(1, (H, H, H)), "attn.c_attn.bias": Split(0, (H, H, H)),
        "attn.c_proj.weight": Split(0, (H,)), "mlp.c_fc.weight": Split(1, (inter,)),
        "mlp.c_fc.bias": Split(0, (inter,)),
        "mlp.c_proj.weight": Split(0, (inter,)),
        # GPT-NeoX's qkv rows are [head][q|k|v][dim]: whole heads are contiguous rows, so a split by heads is a plain
        # split of axis 0 (no sections), and parts concatenate back to the original.
        "attention.query_key_value.weight": Split(0, (3 * H,)), "attention.query_key_value.bias": Split(0, (3 * H,)),
        "attention.dense.weight": Split(1, (H,)), "mlp.dense_h_to_4h.weight": Split(0, (inter,)),
        "mlp.dense_h_to_4h.bias": Split(0, (inter,)), "mlp.dense_4h_to_h.weight": Split(1, (inter,)),
    }
    if rest in table:
        return table[rest]
    replicated = ("ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias", "input_layernorm.weight",
                  "input_layernorm.bias", "post_attention_layernorm.weight", "post_attention_layernorm.bias",
                  "attn.c_proj.bias", "mlp.c_proj.bias", "attention.dense.bias", "mlp.dense_4h_to_h.bias")
    if rest in replicated:
        return None
    raise UnknownTensor(f"tensor {full_name} is not a known {cfg.architecture} weight")


def _is_vocab(cfg: ModelConfig, name: str) -> bool:
    return name in ("model.embed_tokens.weight", "lm_head.weight") or _gpt_name(name) in (
        "wte.weight", "embed_in.weight", "lm_head.weight", "embed_out.weight")


def model_slice(cfg: ModelConfig, name: str, shape: list, D: int):
    """The Split along which the executor's model at degree D keeps only its rank's part of `name` (None: it reads
    the whole tensor). Embeddings are whole on every rank; only the Llama family splits its LM head by vocabulary."""
    if D == 1:
        return None
    s = tensor_split(cfg, name, shape, D)
    if not isinstance(s, Split):
        return None
    if _is_vocab(cfg, name):
        llama_head = name == "lm_head.weight" and cfg.model_type not in ("gpt2", "gpt_neox")
        return s if llama_head else None
    return s


def split_part(t: torch.Tensor, split, T: int, rank: int) -> torch.Tensor:
    """Part `rank` of T of full tensor t along `split` (None: all of t): every section's rank-th 1/T along the
    split axis, concatenated (a view of t when there is one section)."""
    if split is None:
        return t
    pieces, start = [], 0
    for i, size in enumerate(split.sections):
        lo, hi = split.bounds(i, T, rank)
        pieces.append(t.narrow(split.axis, start + lo, hi - lo))
        start += size
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=split.axis)


def local_part(cfg: ModelConfig, name: str, t: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """What rank `rank` of the executor's model at degree `world` keeps of full tensor `name`: its part along
    model_slice(), or t itself where every rank keeps it whole. A tensor whose size along the split axis is not
    what config.json implies is refused by name."""
    s = model_slice(cfg, name, list(t.shape), world)
    if s is not None and (s.axis >= t.dim() or sum(s.sections) != t.shape[s.axis]):
        raise ValueError(f"weight {name} has shape {list(t.shape)}, expected {sum(s.sections)} along axis {s.axis} "
                         f"(sections {list(s.sections)}) from config.json")
    return split_part(t, s, world, rank)


def check_divisible(cfg: ModelConfig, T: int, flag: str = "tensor-parallel degree") -> None:
    """Heads, KV heads and the MLP width must divide by T (the vocabulary need not: it is then replicated)."""
    for what, n in (("num_attention_heads", cfg.num_heads), ("num_key_value_heads", cfg.num_kv_heads),
                    ("intermediate_size", cfg.intermediate_size)):
        if n % T:
            raise ValueError(f"{cfg.architecture}: {what}={n} is not divisible by {flag} {T}")


# ---- reading a checkpoint saved at degree T ---------------------------------------------------------------------


def resolve_checkpoint_json(model_dir: str, checkpoint: str) -> str:
    """option.checkpoint: a JSON file or a directory holding ds_inference_config.json, relative to the model
    directory unless absolute."""
    path = checkpoint if os.path.isabs(checkpoint) else os.path.join(model_dir, checkpoint)
    if os.path.isdir(path):
        inner = os.path.join(path, DEFAULT_JSON)
        if not os.path.isfile(inner):
            raise FileNotFoundError(f"option.checkpoint={checkpoint}: directory {path} has no {DEFAULT_JSON}")
        return inner
    if not os.path.isfile(path):
        raise FileNotFoundError(f"option.checkpoint={checkpoint}: no such file or directory {path}")
    return path


@dataclass
class _Entry:
    name: str
    shape: list
    dtype: str
    split: object  # Split | None


class TpCheckpoint:
    """A checkpoint saved at degree T, validated against its JSON on open (headers only; no weights read)."""

    def __init__(self, json_path: str, cfg: ModelConfig, training_mp_size: int = 0):
        self.path = json_path
        try:
            with open(json_path, encoding="utf-8") as f:
                raw = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"checkpoint JSON {json_path} is not valid JSON: {e}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"checkpoint JSON {json_path} is not a JSON object")
        self._check_header(raw, cfg, training_mp_size)
        base = os.path.dirname(os.path.abspath(json_path))
        self.entries = self._entries(raw["tensors"])
        self.parts = []
        for i, rel in enumerate(raw["checkpoints"]):
            p = rel if os.path.isabs(rel) else os.path.join(base, rel)
            if not os.path.isfile(p):
                raise FileNotFoundError(f"checkpoint {json_path}: part {i} file {p} does not exist")
            self.parts.append(SafetensorsFile(p))
        self._check_parts()

    def _check_header(self, raw: dict, cfg: ModelConfig, training_mp_size: int) -> None:
        p = self.path
        if raw.get("type") != FORMAT_TYPE or not isinstance(raw.get("tensors"), dict):
            raise ValueError(
                f"checkpoint JSON {p} has type={raw.get('type')!r} and no per-tensor split map: the GPU executor "
                f"loads only checkpoints written by `python3 -m lmi_executor.shard_checkpoint` (type {FORMAT_TYPE}); "
                "write one from the Hugging Face model folder"
            )
        version = raw.get("version")
        if not isinstance(version, (int, float)) or int(version) != int(FORMAT_VERSION):
            raise ValueError(f"checkpoint JSON {p}: version {version!r} is not supported (expected {FORMAT_VERSION})")
        par = raw.get("parallelization", "tp")
        if par != "tp":
            raise ValueError(f"checkpoint JSON {p}: parallelization={par!r} is not supported (only 'tp')")
        T = raw.get("tp_size")
        if not isinstance(T, int) or isinstance(T, bool) or T < 1:
            raise ValueError(f"checkpoint JSON {p}: tp_size must be a positive integer, got {T!r}")
        files = raw.get("checkpoints")
        if not isinstance(files, list) or not all(isinstance(x, str) for x in files):
            raise ValueError(f"checkpoint JSON {p}: 'checkpoints' must be a list of file names, one per saved rank")
        if len(files) != T:
            raise ValueError(f"checkpoint JSON {p}: tp_size={T} but 'checkpoints' lists {len(files)} files")
        if training_mp_size and training_mp_size != T:
            raise ValueError(
                f"option.training_mp_size={training_mp_size} but checkpoint {p} was saved at tensor-parallel degree "
                f"{T} (tp_size); set option.training_mp_size={T}"
            )
        arch = raw.get("architecture")
        if arch != cfg.architecture:
            raise ValueError(f"checkpoint {p} was written for {arch} but the model's config.json is {cfg.architecture}")
        self.tp_size = T

    def _entries(self, tensors: dict) -> list:
        out = []
        for name, e in tensors.items():
            where = f"checkpoint {self.path}: tensor {name}"
            shape = e.get("shape") if isinstance(e, dict) else None
            if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
                raise ValueError(f"{where}: 'shape' must be a list of sizes")
            s = e.get("split")
            split = None
            if s is not None:
                axis = s.get("axis") if isinstance(s, dict) else None
                if not isinstance(axis, int) or not 0 <= axis < len(shape):
                    raise ValueError(f"{where}: split axis {axis!r} is not an axis of shape {shape}")
                sections = tuple(s.get("sections") or (shape[axis],))
                if sum(sections) != shape[axis]:
                    raise ValueError(f"{where}: split sections {list(sections)} do not add up to {shape[axis]} "
                                     f"(axis {axis} of shape {shape})")
                bad = [x for x in sections if x % self.tp_size]
                if bad:
                    raise ValueError(f"{where}: split section(s) {bad} do not divide by tp_size={self.tp_size}")
                split = Split(axis, sections)
            out.append(_Entry(name, shape, str(e.get("dtype", "")), split))
        return out

    def part_shape(self, e: _Entry) -> list:
        if e.split is None:
            return list(e.shape)
        shape = list(e.shape)
        shape[e.split.axis] //= self.tp_size
        return shape

    def _check_parts(self) -> None:
        listed = {e.name for e in self.entries}
        for t, part in enumerate(self.parts):
            extra = sorted(set(part.names()) - listed)
            if extra:
                raise ValueError(f"checkpoint {self.path}: part {t} file {part.path} holds tensor {extra[0]} "
                                 f"that the JSON does not list")
        for e in self.entries:
            want = self.part_shape(e)
            dtype = None
            for t, part in enumerate(self.parts):
                if e.name not in part.header:
                    raise ValueError(f"checkpoint {self.path}: tensor {e.name} is missing from part {t} "
                                     f"file {part.path}")
                got = part.shape(e.name)
                if got != want:
                    how = "replicated" if e.split is None else \
                        f"split {self.tp_size} ways along axis {e.split.axis} (sections {list(e.split.sections)})"
                    raise ValueError(f"checkpoint {self.path}: tensor {e.name} in part {t} file {part.path} has shape "
                                     f"{got}, expected {want} (full shape {e.shape}, {how})")
                d = part.header[e.name]["dtype"]
                if dtype is not None and d != dtype:
                    raise ValueError(f"checkpoint {self.path}: tensor {e.name} is {d} in part {t} file {part.path} "
                                     f"but {dtype} in part 0")
                dtype = d
                part.dtype(e.name)  # an unsupported dtype fails here, by name

    def iter_tensors(self, cfg: ModelConfig, rank: int, world: int):
        """(name, tensor) in the JSON's order, each full-shaped: a part-0 view for replicated tensors, else a fresh
        buffer holding (at least) the slice rank `rank` of `world` keeps, merged from the parts that overlap it."""
        T = self.tp_size
        for e in self.entries:
            if e.split is None:
                yield e.name, self.parts[0].tensor(e.name)
                continue
            s, want = e.split, model_slice(cfg, e.name, e.shape, world)
            sliced = want is not None and want.axis == s.axis and tuple(want.sections) == tuple(s.sections) and \
                all(x % p == 0 for x, p in zip(s.sections, want.pieces or [world] * len(s.sections)))
            dtype = self.parts[0].dtype(e.name)
            buf = torch.empty(e.shape, dtype=dtype)
            if POISON_UNREAD and sliced:
                buf.fill_(math.nan if dtype.is_floating_point else -1)
            views = {}
            sec_full = sec_part = 0
            for i, size in enumerate(s.sections):
                per_part = size // T
                lo, hi = want.bounds(i, world, rank) if sliced else (0, size)
                for t in (range(lo // per_part, (hi - 1) // per_part + 1) if hi > lo else ()):
                    a, b = max(lo, t * per_part), min(hi, (t + 1) * per_part)
                    if t not in views:
                        views[t] = self.parts[t].tensor(e.name)
                    src = views[t].narrow(s.axis, sec_part + a - t * per_part, b - a)
                    buf.narrow(s.axis, sec_full + a, b - a).copy_(src)
                sec_full += size
                sec_part += per_part
            del views
            yield e.name, buf
            del buf


def iter_weights(opts: ExecutorOptions, cfg: ModelConfig, rank: int, world: int):
    """The (name, tensor) stream a rank loads: the model directory's safetensors, or option.checkpoint re-sharded."""
    if not opts.checkpoint:
        if opts.training_mp_size > 1:
            sys.stderr.write(f"lmi_executor: option.training_mp_size={opts.training_mp_size} has no effect without "
                             "option.checkpoint (Hugging Face weights carry no tensor-parallel degree)\n")
        yield from iter_checkpoint(opts.model_dir)
        return
    ckpt = TpCheckpoint(resolve_checkpoint_json(opts.model_dir, opts.checkpoint), cfg, opts.training_mp_size)
    yield from ckpt.iter_tensors(cfg, rank, world)
