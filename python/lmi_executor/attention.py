# Paged attention over a flattened batch of variable-length query chunks (prefill, chunked prefill and
# decode mixed in one step). The KV cache of a layer is [num_blocks, block_size, num_kv_heads, head_dim];
# token t of a request lives at slot block_table[t // block_size] * block_size + t % block_size.
# Invariant: every backend computes the same function; the reference one (plain torch, fp32 softmax,
# no scaled_dot_product_attention so Debian's torch 1.13 runs it) is what the others are tested against.
import os
from dataclasses import dataclass

import torch

from .transfer import to_device

# rope_in_decode: decode steps of the Triton backend rotate q and the new key and write the new K/V inside the
# attention kernel (Attention.decode_with_rope); LMI_DECODE_ROPE_IN_ATTN=0 keeps the separate rotary kernel (an A/B
# switch; benchmarks flip it between graph captures).
FLAGS = {"rope_in_decode": os.environ.get("LMI_DECODE_ROPE_IN_ATTN", "1") != "0"}


@dataclass
class AttentionMetadata:
    slot_mapping: torch.Tensor  # [T] int64: where each new token's K/V goes
    query_start_loc: torch.Tensor  # [B+1] int32, device
    seq_lens: torch.Tensor  # [B] int32, device: context length after this step
    block_tables: torch.Tensor  # [B, max_blocks] int32, device
    max_query_len: int
    max_seq_len: int  # a bound on seq_lens (0: none known; the decode graphs capture with 0 or a class bound)
    query_start_loc_cpu: list
    seq_lens_cpu: list
    # Per-step work list of a backend (the Triton kernel's prefill query tiles), built by the first layer
    # that needs it and reused by the others.
    tiles: object = None


def last_rows_metadata(q_lens: list, seq_lens: list, seq_lens_dev: torch.Tensor, block_tables: torch.Tensor,
                       rows: list) -> "AttentionMetadata | None":
    """The decode-form metadata of `rows` (token indices into a step whose sequences compute q_lens new tokens
    each, reaching seq_lens) when every row is the last new token of its sequence: one query per row, which
    sees its sequence's whole context. A row may repeat (padding to a bucket). None when some row is not a
    sequence's last new token (prompt logprobs score every prompt row), or when the rows are every token (a
    decode step: nothing to leave out)."""
    if len(rows) >= sum(q_lens):
        return None
    seq_of_end, t = {}, 0
    for j, n in enumerate(q_lens):
        t += n
        seq_of_end[t - 1] = j
    seqs = [seq_of_end.get(r) for r in rows]
    if None in seqs:
        return None
    dev = seq_lens_dev.device
    sel = to_device(seqs, dev, torch.int64)
    lens = [seq_lens[j] for j in seqs]
    R = len(rows)
    return AttentionMetadata(
        slot_mapping=sel,  # (unused: these rows write no K/V)
        query_start_loc=torch.arange(R + 1, dtype=torch.int32, device=dev),
        seq_lens=seq_lens_dev.index_select(0, sel).int(),
        block_tables=block_tables.index_select(0, sel),
        max_query_len=1,
        max_seq_len=max(lens),
        query_start_loc_cpu=list(range(R + 1)),
        seq_lens_cpu=lens,
    )


def write_kv(k_cache: torch.Tensor, v_cache: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slots: torch.Tensor):
    kvh, hd = k_cache.shape[2], k_cache.shape[3]
    if k_cache.element_size() == 1:  # an fp8 cache: round to it, then copy the bytes (index_copy_ has no fp8)
        k, v = k.to(k_cache.dtype).view(torch.uint8), v.to(v_cache.dtype).view(torch.uint8)
        k_cache, v_cache = k_cache.view(torch.uint8), v_cache.view(torch.uint8)
    k_cache.view(-1, kvh, hd).index_copy_(0, slots, k.to(k_cache.dtype))
    v_cache.view(-1, kvh, hd).index_copy_(0, slots, v.to(v_cache.dtype))


def _blocks(cache: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
    if cache.element_size() == 1:  # fp8: gather the bytes (fp8 tensors have no index kernels everywhere)
        return cache.view(torch.uint8)[blocks].view(cache.dtype)
    return cache[blocks]


def reference_attention(q, k_cache, v_cache, meta: AttentionMetadata, scale: float, window: int = 0) -> torch.Tensor:
    """q: [T, H, D] -> [T, H, D]. One request at a time: gather its context, causal mask, fp32 softmax.
    window > 0: a query at position p sees keys p - window + 1 .. p (Mistral's sliding window)."""
    out = torch.empty_like(q)
    block_size, kvh, hd = k_cache.shape[1], k_cache.shape[2], k_cache.shape[3]
    group = q.shape[1] // kvh
    qsl, lens = meta.query_start_loc_cpu, meta.seq_lens_cpu
    tables = meta.block_tables
    for i in range(len(lens)):
        qs, qe, ctx = qsl[i], qsl[i + 1], lens[i]
        n = qe - qs
        if n == 0:
            continue
        nb = (ctx + block_size - 1) // block_size
        blocks = tables[i, :nb].long()
        k = _blocks(k_cache, blocks).reshape(nb * block_size, kvh, hd)[:ctx].float()
        v = _blocks(v_cache, blocks).reshape(nb * block_size, kvh, hd)[:ctx].float()
        if group > 1:
            k = k.repeat_interleave(group, dim=1)
            v = v.repeat_interleave(group, dim=1)
        qi = q[qs:qe].float()
        scores = torch.einsum("nhd,lhd->hnl", qi, k) * scale
        # Query row r sits at position ctx - n + r and sees keys 0..ctx - n + r.
        q_pos = torch.arange(ctx - n, ctx, device=q.device)[:, None]
        k_pos = torch.arange(ctx, device=q.device)[None, :]
        hidden = k_pos > q_pos
        if window > 0:
            hidden = hidden | (k_pos <= q_pos - window)
        scores = scores.masked_fill(hidden[None], float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        out[qs:qe] = torch.einsum("hnl,lhd->nhd", probs, v).to(q.dtype)
    return out


def whole_prompts(meta: AttentionMetadata) -> bool:
    """Whether a step computes prompts only, each from its first token (no cached context: a prompt's first
    chunk counts, a later chunk or a prefix-cache hit does not), so every key it attends to is one of its own."""
    if meta.max_query_len <= 1:
        return False
    qsl, lens = meta.query_start_loc_cpu, meta.seq_lens_cpu
    return all(qsl[i + 1] - qsl[i] == n for i, n in enumerate(lens))


class Attention:
    """Chooses the kernel once per process; the model calls forward() per layer."""

    def __init__(self, backend: str, device: torch.device, sliding_window: int = 0):
        self.window = sliding_window
        if backend == "auto":
            backend = "triton" if device.type == "cuda" else "reference"
        if backend == "triton" and device.type != "cuda":
            raise ValueError("attention_backend=triton needs device=cuda")
        self.backend = backend
        if backend == "triton":
            from .kernels import paged_attention

            self._triton = paged_attention.paged_attention
            self._triton_rope = paged_attention.decode_attention_rope

    def rotates_in_decode(self, meta: AttentionMetadata, qk_norm: bool) -> bool:
        """Whether this decode step's attention takes the fused qkv output and does the rotary embedding and the K/V
        cache write itself (decode_with_rope), saving the separate kernel a layer: the Triton backend, one new token
        per sequence, no per-head q/k norms (Qwen3's come before the rotation)."""
        return self.backend == "triton" and FLAGS["rope_in_decode"] and meta.max_query_len == 1 and not qk_norm

    def reads_fresh_kv(self, meta: AttentionMetadata, kv_dtype: torch.dtype, dtype: torch.dtype) -> bool:
        """Whether this step's attention may read the step's own rotated K/V (token-major views of the fused qkv
        output) instead of the paged cache: a prompt step whose every sequence has no cached context (its query
        length is its context length), over a cache of the model's dtype, outside a CUDA-graph capture (a prefill
        graph replays other prompts, which may have a cached prefix). The Triton kernel's contiguous loads and
        deeper pipeline make such steps' attention ~18% faster at 16 x 512 tokens (docs/benchmarks.md)."""
        if self.backend != "triton" or kv_dtype != dtype or not whole_prompts(meta):
            return False
        return not torch.cuda.is_current_stream_capturing()

    def decode_with_rope(self, qkv, num_q_heads: int, k_cache, v_cache, meta: AttentionMetadata, scale: float,
                         cos_sin, positions) -> torch.Tensor:
        """A decode step's attention from the fused qkv output [T, (H + 2 KVH) D]: rotates q and the new key, writes
        the new K/V to meta.slot_mapping, attends -> [T, H, D]. Only where rotates_in_decode() said so."""
        return self._triton_rope(qkv, num_q_heads, k_cache, v_cache, meta, scale, cos_sin, positions,
                                 meta.slot_mapping, window=self.window)

    def forward(self, q, k_cache, v_cache, meta: AttentionMetadata, scale: float, fresh: tuple = None) -> torch.Tensor:
        """fresh = (k, v): the step's rotated K/V as [T, KVH, D] views, given when reads_fresh_kv() said so."""
        if self.backend == "triton":
            return self._triton(q, k_cache, v_cache, meta, scale, window=self.window, fresh=fresh)
        return reference_attention(q, k_cache, v_cache, meta, scale, self.window)
