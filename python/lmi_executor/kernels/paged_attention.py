# Paged attention in Triton for mixed batches: each program takes BLOCK_Q query tokens of one sequence
# times the GROUP query heads that share one KV head (GQA), walks the sequence's KV through its block
# table with an online softmax, and masks causally. Decode steps may split each sequence's KV range over
# NUM_SPLITS programs (flash-decoding) and merge the partial softmaxes in a second kernel, so a batch of
# one still spreads over the GPU. On Hopper the merge is a programmatic dependent launch: its programs are
# resident before the attention ends and read every split's partial in one round trip once it has.
# Invariant: same function as attention.reference_attention.
import os

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from ..transfer import to_device
from .attention_launch import decode_launch, next_pow2, prefill_launch
from .gemv import gdc_launch_dependents, gdc_wait, pdl_supported

# Switch of the split-decode path (benchmarks flip it between graph captures): merge_pdl = the merge kernel is a
# programmatic dependent launch of the attention kernel (resident before it ends, waits for it with gdc_wait),
# so the merge's launch latency hides under the attention (Hopper; LMI_ATTN_MERGE_PDL=0 turns it off).
# causal_split = a prompt tile walks the keys every one of its rows sees (those before its first query) in a loop
# that builds no mask, then the rest masked (LMI_ATTN_CAUSAL_SPLIT=0 turns it off).
# fresh_tma = prompt steps that read their own K/V load it through tensor descriptors (Hopper's copy engine) where the
# buffers allow (LMI_ATTN_FRESH_TMA=0 turns it off).
FLAGS = {"merge_pdl": os.environ.get("LMI_ATTN_MERGE_PDL", "1") != "0",
         "causal_split": os.environ.get("LMI_ATTN_CAUSAL_SPLIT", "1") != "0",
         "fresh_tma": os.environ.get("LMI_ATTN_FRESH_TMA", "1") != "0"}


@triton.jit
def _kv_tile(q, m_i, l_i, acc, k_ptr, v_ptr, bt_ptr, seq, bt_stride, kvh, num_kv_heads, start, hi, q_pos, window,
             qk_scale, n_idx, d, kv_tok0, kv_stride, MASK: tl.constexpr, PAGE: tl.constexpr, HEAD_DIM: tl.constexpr,
             IEEE: tl.constexpr, SLIDING: tl.constexpr, FRESH: tl.constexpr, TMA: tl.constexpr):
    """One BLOCK_N-key tile of the online softmax. MASK=False: every key of the tile is in the context and
    visible to every row (a prompt tile's keys before its first query), so no mask is built. FRESH: the keys are
    the step's own rows kv_tok0 + position of token-major K/V buffers (row stride kv_stride), not the paged cache;
    TMA: those buffers come as tensor descriptors ([tokens, KV heads * HEAD_DIM], BLOCK_N x HEAD_DIM boxes), which
    the copy engine loads (rows past the step's last token read as zeros)."""
    kv_pos = start + n_idx
    if MASK:
        kv_ok = kv_pos < hi
    if TMA:
        k = k_ptr.load([kv_tok0 + start, kvh * HEAD_DIM])
    else:
        if FRESH:
            kv_off = ((kv_tok0 + kv_pos).to(tl.int64) * kv_stride + kvh * HEAD_DIM)[:, None] + d[None, :]
        else:
            if MASK:
                blk = tl.load(bt_ptr + seq * bt_stride + kv_pos // PAGE, mask=kv_ok, other=0).to(tl.int64)
            else:
                blk = tl.load(bt_ptr + seq * bt_stride + kv_pos // PAGE).to(tl.int64)
            slot = blk * PAGE + kv_pos % PAGE
            kv_off = (slot * num_kv_heads + kvh)[:, None] * HEAD_DIM + d[None, :]
        if MASK:
            k = tl.load(k_ptr + kv_off, mask=kv_ok[:, None], other=0.0).to(q.dtype)  # fp8 caches: upcast
        else:
            k = tl.load(k_ptr + kv_off).to(q.dtype)
    if IEEE:  # fp32 caches (conformance runs): no tf32 rounding
        s = tl.dot(q, tl.trans(k), input_precision="ieee")
    else:
        s = tl.dot(q, tl.trans(k))
    if MASK:
        allowed = kv_ok[None, :] & (kv_pos[None, :] <= q_pos[:, None])
        if SLIDING:
            allowed = allowed & (kv_pos[None, :] > q_pos[:, None] - window)
        s = tl.where(allowed, s, float("-inf"))
    # Base 2 (qk_scale carries log2 e; m_i and the partials' maxima are in these units): one fused multiply-add and
    # one ex2 per score, where exp would scale, subtract, then multiply by log2 e inside exp.
    m_new = tl.maximum(m_i, tl.max(s, 1) * qk_scale)
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(s * qk_scale - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    if TMA:
        v = v_ptr.load([kv_tok0 + start, kvh * HEAD_DIM])
        if MASK:  # rows past this sequence's keys hold the next sequence's values: zero them (p is 0 there, an inf not)
            v = tl.where(kv_ok[:, None], v, tl.zeros_like(v))
    elif MASK:
        v = tl.load(v_ptr + kv_off, mask=kv_ok[:, None], other=0.0).to(q.dtype)
    else:
        v = tl.load(v_ptr + kv_off).to(q.dtype)
    if IEEE:
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision="ieee")
    else:
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
    return m_new, l_i, acc


@triton.jit
def _rotate_halves(a, b, c, s, first):
    """Neox rotary of one head in fp32: a the head's elements, b each one's partner in the other half, first the
    mask of the first half; c, s the position's cos and sin (each half's values repeated)."""
    return tl.where(first, a * c - b * s, a * c + b * s)


# num_tokens (the step's token count) changes every step: never specialize on it (Triton would compile another
# variant the first time a count is not a multiple of 16, mid-serving: ~0.5 s stalls measured in a burst).
@triton.jit(do_not_specialize=["num_tokens"])
def _attn_kernel(
    q_ptr, k_ptr, v_ptr, out_ptr, part_acc_ptr, part_ml_ptr,
    qsl_ptr, seq_lens_ptr, bt_ptr, tile_seq_ptr, tile_idx_ptr, cs_ptr, pos_ptr, slot_ptr,
    scale, bt_stride, num_q_heads, num_kv_heads, num_tokens, window, kv_stride, q_stride,
    GROUP: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    HEAD_DIM: tl.constexpr, PAGE: tl.constexpr, NUM_SPLITS: tl.constexpr, IS_DECODE: tl.constexpr,
    IEEE: tl.constexpr, SLIDING: tl.constexpr, HEAD_FAST: tl.constexpr, KV_F16: tl.constexpr,
    TRIGGER: tl.constexpr, CAUSAL_SPLIT: tl.constexpr, FRESH: tl.constexpr, ROPE: tl.constexpr, TMA: tl.constexpr,
):
    if TRIGGER:
        gdc_launch_dependents()  # the merge kernel may launch now: it waits for this grid before reading
    if HEAD_FAST:  # grid (kv heads, sequences, splits): the heads of one page are read by neighbouring programs
        pid = tl.program_id(1)
        kvh = tl.program_id(0)
    else:
        pid = tl.program_id(0)
        kvh = tl.program_id(1)
    split = tl.program_id(2)
    if IS_DECODE:
        seq = pid
        qt = 0
    else:
        seq = tl.load(tile_seq_ptr + pid)
        qt = tl.load(tile_idx_ptr + pid)
    q_start = tl.load(qsl_ptr + seq)
    q_len = tl.load(qsl_ptr + seq + 1) - q_start
    ctx = tl.load(seq_lens_ptr + seq)
    prefix = ctx - q_len

    m_idx = tl.arange(0, BLOCK_M)
    q_tok = qt * BLOCK_Q + m_idx // GROUP
    head = kvh * GROUP + m_idx % GROUP
    row_ok = (q_tok < q_len) & (m_idx < BLOCK_Q * GROUP)
    d = tl.arange(0, HEAD_DIM)
    tok = (q_start + q_tok).to(tl.int64)
    q_off = (tok * num_q_heads + head)[:, None] * HEAD_DIM + d[None, :]  # the output's (and q's, without ROPE)
    if ROPE:  # decode: q_ptr is the fused qkv output (row stride q_stride); rotate q here (neox halves, fp32)
        HALF: tl.constexpr = HEAD_DIM // 2
        first = (d < HALF)[None, :]
        d_pair = (d + HALF) % HEAD_DIM  # the other half's element each one rotates with
        tok0 = q_start.to(tl.int64)
        pos = tl.load(pos_ptr + tok0).to(tl.int64)
        c = tl.load(cs_ptr + pos * HEAD_DIM + d % HALF)[None, :]
        s = tl.load(cs_ptr + pos * HEAD_DIM + HALF + d % HALF)[None, :]
        q_src = (tok * q_stride + head * HEAD_DIM)[:, None]
        qa = tl.load(q_ptr + q_src + d[None, :], mask=row_ok[:, None], other=0.0)
        qb = tl.load(q_ptr + q_src + d_pair[None, :], mask=row_ok[:, None], other=0.0).to(tl.float32)
        q = _rotate_halves(qa.to(tl.float32), qb, c, s, first).to(qa.dtype)
    else:
        q = tl.load(q_ptr + q_off, mask=row_ok[:, None], other=0.0)
    LOG2E: tl.constexpr = 1.4426950408889634
    if KV_F16:  # fp8 caches: e4m3 widens to fp16 in one instruction; fold the scale into q before narrowing it
        q = (q.to(tl.float32) * scale).to(tl.float16)
        qk_scale = LOG2E
    else:
        qk_scale = scale * LOG2E
    q_pos = prefix + q_tok

    kv_end = tl.minimum(ctx, prefix + tl.minimum((qt + 1) * BLOCK_Q, q_len))
    if NUM_SPLITS == 1:
        lo = 0
        hi = kv_end
    else:
        chunk = tl.cdiv(tl.cdiv(kv_end, NUM_SPLITS), BLOCK_N) * BLOCK_N
        lo = split * chunk
        hi = tl.minimum(lo + chunk, kv_end)

    if ROPE:
        # The step's new key and value of this KV head: the program whose range holds the last position rotates the
        # key, writes both to the cache slot, and reads them back in its loop after the barrier (the same loads and
        # arithmetic as when a separate kernel wrote them).
        k_src = tok0 * q_stride + (num_q_heads + kvh) * HEAD_DIM
        ka = tl.load(q_ptr + k_src + d[None, :]).to(tl.float32)
        kb = tl.load(q_ptr + k_src + d_pair[None, :]).to(tl.float32)
        k_new = _rotate_halves(ka, kb, c, s, first).to(qa.dtype)
        v_new = tl.load(q_ptr + k_src + num_kv_heads * HEAD_DIM + d[None, :])
        slot = tl.load(slot_ptr + tok0).to(tl.int64)
        mine = (d[None, :] < HEAD_DIM) & (ctx - 1 >= lo) & (ctx - 1 < hi)
        kv_dst = (slot * num_kv_heads + kvh) * HEAD_DIM + d[None, :]
        tl.store(k_ptr + kv_dst, k_new.to(k_ptr.dtype.element_ty), mask=mine)
        tl.store(v_ptr + kv_dst, v_new.to(v_ptr.dtype.element_ty), mask=mine)
        tl.debug_barrier()

    m_i = tl.full([BLOCK_M], -1.0e30, dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    n_idx = tl.arange(0, BLOCK_N)
    if CAUSAL_SPLIT and not IS_DECODE and not SLIDING:
        # Whole tiles of keys up to the tile's first query position are visible to every row: no mask there.
        full_end = tl.minimum((prefix + qt * BLOCK_Q + 1) // BLOCK_N * BLOCK_N, hi)
        for start in range(lo, full_end, BLOCK_N):
            m_i, l_i, acc = _kv_tile(q, m_i, l_i, acc, k_ptr, v_ptr, bt_ptr, seq, bt_stride, kvh, num_kv_heads, start,
                                     hi, q_pos, window, qk_scale, n_idx, d, q_start, kv_stride, False, PAGE, HEAD_DIM, IEEE,
                                     SLIDING, FRESH, TMA)
        for start in range(full_end, hi, BLOCK_N):
            m_i, l_i, acc = _kv_tile(q, m_i, l_i, acc, k_ptr, v_ptr, bt_ptr, seq, bt_stride, kvh, num_kv_heads, start,
                                     hi, q_pos, window, qk_scale, n_idx, d, q_start, kv_stride, True, PAGE, HEAD_DIM, IEEE,
                                     SLIDING, FRESH, TMA)
    else:
        for start in range(lo, hi, BLOCK_N):
            m_i, l_i, acc = _kv_tile(q, m_i, l_i, acc, k_ptr, v_ptr, bt_ptr, seq, bt_stride, kvh, num_kv_heads, start,
                                     hi, q_pos, window, qk_scale, n_idx, d, q_start, kv_stride, True, PAGE, HEAD_DIM, IEEE,
                                     SLIDING, FRESH, TMA)

    if NUM_SPLITS == 1:
        l_safe = tl.where(l_i == 0.0, 1.0, l_i)
        o = acc / l_safe[:, None]
        tl.store(out_ptr + q_off, o.to(out_ptr.dtype.element_ty), mask=row_ok[:, None])
    else:
        # Partials: acc unnormalized, with its max (base-2 units) and sum, per (split, token, head).
        base = (split * num_tokens + tok) * num_q_heads + head
        tl.store(part_acc_ptr + base[:, None] * HEAD_DIM + d[None, :], acc, mask=row_ok[:, None])
        tl.store(part_ml_ptr + base * 2, m_i, mask=row_ok)
        tl.store(part_ml_ptr + base * 2 + 1, l_i, mask=row_ok)


@triton.jit
def _merge_kernel(out_ptr, part_acc_ptr, part_ml_ptr, num_rows, NUM_SPLITS: tl.constexpr, SPLITS_P2: tl.constexpr,
                  HEAD_DIM: tl.constexpr, WAIT: tl.constexpr):
    """One (token, head) row: every split's partial is loaded at once (one round trip), then combined."""
    if WAIT:
        gdc_wait()  # launched early as a dependent of the attention kernel: its partials are visible after this
    row = tl.program_id(0).to(tl.int64)  # row = token * num_q_heads + head
    d = tl.arange(0, HEAD_DIM)
    sp = tl.arange(0, SPLITS_P2)
    ok = sp < NUM_SPLITS
    r = sp * num_rows + row
    ms = tl.load(part_ml_ptr + r * 2, mask=ok, other=-1.0e30)
    ls = tl.load(part_ml_ptr + r * 2 + 1, mask=ok, other=0.0)
    acc = tl.load(part_acc_ptr + r[:, None] * HEAD_DIM + d[None, :], mask=ok[:, None], other=0.0)
    w = tl.exp2(ms - tl.max(ms, 0))  # the maxima are in base-2 units (_kv_tile)
    l_tot = tl.sum(ls * w, 0)
    l_tot = tl.where(l_tot == 0.0, 1.0, l_tot)
    o = tl.sum(acc * w[:, None], 0) / l_tot
    tl.store(out_ptr + row * HEAD_DIM + d, o.to(out_ptr.dtype.element_ty))


class Workspace:
    """Partial-softmax buffers for split decode, grown on demand and reused (also across graph captures)."""

    def __init__(self):
        self.acc = None
        self.ml = None
        self._retired = []  # captured graphs may still point at an outgrown buffer: never free one

    def get(self, splits: int, tokens: int, heads: int, head_dim: int, device):
        need = splits * tokens * heads
        if self.acc is None or self.acc.shape[0] < need * head_dim:
            if self.acc is not None:
                self._retired.append((self.acc, self.ml))
            self.acc = torch.empty(need * head_dim, dtype=torch.float32, device=device)
            self.ml = torch.empty(need * 2, dtype=torch.float32, device=device)
        return self.acc, self.ml

WORKSPACE = Workspace()


_TMA_DEVICES = {}


def _tma_loadable(t: torch.Tensor, head_dim: int) -> bool:
    """Whether a 2-D view [tokens, KV heads * head_dim] can back a tensor descriptor of head_dim-wide boxes: a Hopper
    (or later) GPU, a 16-bit dtype (fp32 runs, the conformance suite's, keep the pointer loads), the base address, the
    row pitch and a head's row all multiples of 16 bytes."""
    if not t.is_cuda or t.element_size() != 2 or t.stride(1) != 1:
        return False
    dev = t.device.index
    if dev not in _TMA_DEVICES:
        _TMA_DEVICES[dev] = torch.cuda.get_device_capability(dev)[0] >= 9
    return _TMA_DEVICES[dev] and t.data_ptr() % 16 == 0 and (t.stride(0) * 2) % 16 == 0 and (head_dim * 2) % 16 == 0


def _prefill_tiles(qsl: list, block_q: int, device) -> torch.Tensor:
    """[2, tiles] int32 on the device: (sequence, query tile) of every program of a prefill or mixed step.
    Built once per step (the layers share it) from the host copy of the query start offsets."""
    seq_ids, tile_ids = [], []
    for i in range(len(qsl) - 1):
        n = (qsl[i + 1] - qsl[i] + block_q - 1) // block_q
        seq_ids += [i] * n
        tile_ids += range(n)
    # A pageable source: pinning a fresh buffer per step can wait for the GPU (the pinned-memory allocator
    # synchronizes when it must grow), which would stall a launch queued behind a running step.
    return to_device([seq_ids, tile_ids], device, torch.int32)


def paged_attention(q, k_cache, v_cache, meta, scale: float, num_splits: int = 0, window: int = 0,
                    launch: dict = None, fresh: tuple = None) -> torch.Tensor:
    """q [T, H, D] -> [T, H, D]; meta is attention.AttentionMetadata. num_splits forces the decode split
    count; launch overrides decode_launch()'s or prefill_launch()'s parameters (benchmarks and tests sweep
    them; "f16" takes effect over fp8 caches only). fresh = (k, v), token-major [T, KVH, D] views of the step's
    own rotated keys and values (one row stride, contiguous heads): a prompt step whose every sequence has no
    cached context (query length = context length) reads them instead of the paged cache."""
    return _attention(q, q.shape[1], k_cache, v_cache, meta, scale, num_splits, window, launch, fresh, None)


def decode_attention_rope(qkv, num_q_heads: int, k_cache, v_cache, meta, scale: float, cos_sin, positions, slots,
                          num_splits: int = 0, window: int = 0, launch: dict = None) -> torch.Tensor:
    """A decode step's attention straight from the fused qkv projection [T, (H + 2 KVH) D] (rows may be strided):
    each program rotates its query heads (neox halves, cos_sin [positions, D] as layers.rope_cos_sin builds it),
    rotates the new key of its KV head and writes it and the new value to `slots`, then attends over the cache as
    paged_attention does. The same function as fused.rope_and_cache followed by paged_attention -> [T, H, D]."""
    if meta.max_query_len != 1:
        raise ValueError("decode_attention_rope computes decode steps (one new token per sequence) only")
    if qkv.stride(1) != 1:
        raise ValueError("qkv must have contiguous columns")
    return _attention(qkv, num_q_heads, k_cache, v_cache, meta, scale, num_splits, window, launch, None,
                      (cos_sin, positions, slots))


def _attention(q, H, k_cache, v_cache, meta, scale, num_splits, window, launch, fresh, rope) -> torch.Tensor:
    page, kvh = k_cache.shape[1], k_cache.shape[2]
    D = k_cache.shape[3]
    T = q.shape[0]
    group = H // kvh
    out = torch.empty((T, H, D), dtype=q.dtype, device=q.device)
    B = meta.seq_lens.shape[0]
    is_decode = meta.max_query_len == 1
    if is_decode:
        cfg = dict(decode_launch(B, kvh, k_cache.element_size(), meta.max_seq_len))
        if launch:
            cfg.update(launch)
        if num_splits:
            cfg["splits"] = num_splits
        block_q = 1
        tile_seq = tile_idx = meta.seq_lens  # unused by the decode variant
        splits = cfg["splits"]
        grid = (kvh, B, splits) if cfg["head_fast"] else (B, kvh, splits)
    else:
        cfg = prefill_launch(group, D, k_cache.element_size(), meta.max_seq_len, fresh is not None)
        if launch:
            cfg.update(launch)
        block_q = cfg["block_q"]
        if meta.tiles is None or meta.tiles[0] != block_q:
            meta.tiles = (block_q, _prefill_tiles(meta.query_start_loc_cpu, block_q, q.device))
        tiles = meta.tiles[1]
        tile_seq, tile_idx = tiles[0], tiles[1]
        splits = 1
        grid = (tiles.shape[1], kvh, 1)
    block_m = max(16, next_pow2(block_q * group))
    if splits > 1:
        part_acc, part_ml = WORKSPACE.get(splits, T, H, D, q.device)
    else:
        part_acc = part_ml = out
    merge_pdl = splits > 1 and FLAGS["merge_pdl"] and q.is_cuda and pdl_supported()
    k_src, v_src, kv_stride, tma = k_cache, v_cache, 0, False
    is_fresh = fresh is not None and not is_decode
    if is_fresh:
        k_src, v_src = fresh
        kv_stride = k_src.stride(0)
        if v_src.stride(0) != kv_stride or k_src.stride()[1:] != (D, 1) or v_src.stride()[1:] != (D, 1):
            raise ValueError("fresh K/V must share one row stride and have contiguous heads")
        if k_cache.dtype != q.dtype:
            raise ValueError("fresh K/V are read in place of a cache of the model's dtype only")
        k2, v2 = k_src.flatten(1), v_src.flatten(1)  # [tokens, KV heads * D] views
        if FLAGS["fresh_tma"] and _tma_loadable(k2, D) and _tma_loadable(v2, D):
            box = [cfg["block_n"], D]
            k_src, v_src, tma = TensorDescriptor.from_tensor(k2, box), TensorDescriptor.from_tensor(v2, box), True
    if rope is not None:
        cos_sin, positions, slots = rope
        q_stride = q.stride(0)
    else:
        cos_sin = positions = slots = meta.seq_lens  # unused without ROPE
        q_stride = 0
    _attn_kernel[grid](
        q, k_src, v_src, out, part_acc, part_ml,
        meta.query_start_loc, meta.seq_lens, meta.block_tables, tile_seq, tile_idx, cos_sin, positions, slots,
        scale, meta.block_tables.stride(0), H, kvh, T, window, kv_stride, q_stride,
        GROUP=group, BLOCK_Q=block_q, BLOCK_M=block_m, BLOCK_N=cfg["block_n"],
        HEAD_DIM=D, PAGE=page, NUM_SPLITS=splits, IS_DECODE=is_decode, IEEE=q.dtype == torch.float32, SLIDING=window > 0,
        HEAD_FAST=cfg["head_fast"], KV_F16=bool(cfg.get("f16")) and k_cache.element_size() == 1,
        TRIGGER=merge_pdl, CAUSAL_SPLIT=FLAGS["causal_split"], FRESH=is_fresh, ROPE=rope is not None, TMA=tma,
        num_warps=cfg["num_warps"],
        num_stages=cfg["num_stages"],
    )
    if splits > 1:
        extra = {"launch_pdl": True} if merge_pdl else {}
        p2 = next_pow2(splits)  # a row's partials sit in registers at once: more warps past 2,048 values
        _merge_kernel[(T * H,)](out, part_acc, part_ml, T * H, NUM_SPLITS=splits, SPLITS_P2=p2,
                                HEAD_DIM=D, WAIT=merge_pdl, num_warps=1 if p2 * D <= 2048 else 4, **extra)
    return out
