# Prompt attention over the step's own K/V with the K/V tiles brought in by the Hopper tensor-memory accelerator (TMA,
# Triton's host-side TensorDescriptor) instead of per-thread pointer loads: the prompt tiles are bound by instructions
# (docs/benchmarks.md, twentieth session), and TMA takes the address arithmetic and the copy instructions off the
# threads. The candidate kernel lives here (causal prompts with no cached context, 16-bit K/V, no sliding window): the
# same tiles, causal split and base-2 softmax as kernels/paged_attention.py's fresh path, which it is checked against
# and timed with (CUDA-graph replays in interleaved rounds). The shipped kernel has loaded the fresh K/V through
# descriptors too since this script's first run (twentieth session); LMI_ATTN_FRESH_TMA=0 gives it the pointer
# loads this compared against. Llama-3-8B attention shape; K/V as the model passes them:
# column ranges of one fused qkv buffer [T, (H + 2 KVH) D].
#   python3 bench/gpu-attention-prefill-tma.py [--cases 16x512,8x1024,4x2048,1x8192]
import argparse
import os
import sys

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, HERE)

from bench_scripts import load_script  # noqa: E402
from gpu_timing import checked_rounds  # noqa: E402
from lmi_executor.kernels import paged_attention as pa  # noqa: E402

_sweep = load_script("gpu-attention-fp8-sweep.py")
KVH, HD, H = 8, 128, 32
SCALE = HD**-0.5


@triton.jit
def _tile(q, m_i, l_i, acc, k_desc, v_desc, row0, col, start, hi, q_pos, qk_scale, n_idx, MASK: tl.constexpr):
    k = k_desc.load([row0 + start, col])
    s = tl.dot(q, tl.trans(k))
    if MASK:
        kv_pos = start + n_idx
        allowed = (kv_pos[None, :] < hi) & (kv_pos[None, :] <= q_pos[:, None])
        s = tl.where(allowed, s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1) * qk_scale)
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(s * qk_scale - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    v = v_desc.load([row0 + start, col])
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
    return m_new, l_i, acc


@triton.jit
def _prefill_kernel(q_ptr, k_desc, v_desc, out_ptr, qsl_ptr, tile_seq_ptr, tile_idx_ptr, scale, num_q_heads,
                    GROUP: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                    HEAD_DIM: tl.constexpr):
    pid = tl.program_id(0)
    kvh = tl.program_id(1)
    seq = tl.load(tile_seq_ptr + pid)
    qt = tl.load(tile_idx_ptr + pid)
    q_start = tl.load(qsl_ptr + seq)
    q_len = tl.load(qsl_ptr + seq + 1) - q_start
    m_idx = tl.arange(0, BLOCK_M)
    q_tok = qt * BLOCK_Q + m_idx // GROUP
    head = kvh * GROUP + m_idx % GROUP
    row_ok = q_tok < q_len
    d = tl.arange(0, HEAD_DIM)
    tok = (q_start + q_tok).to(tl.int64)
    q_off = (tok * num_q_heads + head)[:, None] * HEAD_DIM + d[None, :]
    q = tl.load(q_ptr + q_off, mask=row_ok[:, None], other=0.0)
    qk_scale = scale * 1.4426950408889634
    hi = tl.minimum((qt + 1) * BLOCK_Q, q_len)
    m_i = tl.full([BLOCK_M], -1.0e30, dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    n_idx = tl.arange(0, BLOCK_N)
    col = kvh * HEAD_DIM
    full_end = tl.minimum((qt * BLOCK_Q + 1) // BLOCK_N * BLOCK_N, hi)
    for start in range(0, full_end, BLOCK_N):
        m_i, l_i, acc = _tile(q, m_i, l_i, acc, k_desc, v_desc, q_start, col, start, hi, q_tok, qk_scale, n_idx, False)
    for start in range(full_end, hi, BLOCK_N):
        m_i, l_i, acc = _tile(q, m_i, l_i, acc, k_desc, v_desc, q_start, col, start, hi, q_tok, qk_scale, n_idx, True)
    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    tl.store(out_ptr + q_off, (acc / l_safe[:, None]).to(out_ptr.dtype.element_ty), mask=row_ok[:, None])


def candidate(q, k2d, v2d, meta, block_q, block_n, warps, stages):
    """q [T, H, D]; k2d, v2d [T, KVH * D] (row stride any multiple of 16 bytes, columns contiguous)."""
    out = torch.empty_like(q)
    kd = TensorDescriptor.from_tensor(k2d, [block_n, HD])
    vd = TensorDescriptor.from_tensor(v2d, [block_n, HD])
    if meta.tiles is None or meta.tiles[0] != block_q:
        meta.tiles = (block_q, pa._prefill_tiles(meta.query_start_loc_cpu, block_q, q.device))
    tiles = meta.tiles[1]
    group = H // KVH
    _prefill_kernel[(tiles.shape[1], KVH)](q, kd, vd, out, meta.query_start_loc, tiles[0], tiles[1], SCALE, H,
                                           GROUP=group, BLOCK_Q=block_q, BLOCK_M=block_q * group, BLOCK_N=block_n,
                                           HEAD_DIM=HD, num_warps=warps, num_stages=stages)
    return out


CANDIDATES = {"tma 16/32/4/3": (16, 32, 4, 3), "tma 16/64/4/3": (16, 64, 4, 3), "tma 32/64/8/3": (32, 64, 8, 3),
              "tma 16/32/4/4": (16, 32, 4, 4), "tma 16/64/4/2": (16, 64, 4, 2)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="16x512,8x1024,4x2048,1x8192")
    a = ap.parse_args()
    for case in a.cases.split(","):
        B, L = (int(x) for x in case.split("x"))
        T = B * L
        g = torch.Generator(device="cuda").manual_seed(0)
        qkv = torch.randn((T, (H + 2 * KVH) * HD), generator=g, device="cuda").to(torch.bfloat16)
        q = qkv[:, : H * HD].contiguous().view(T, H, HD)
        k2d, v2d = qkv[:, H * HD: (H + KVH) * HD], qkv[:, (H + KVH) * HD:]
        fresh = (k2d.view(T, KVH, HD), v2d.view(T, KVH, HD))
        kc = torch.empty((8, 16, KVH, HD), dtype=torch.bfloat16, device="cuda")  # unread: the fresh path reads qkv
        table = torch.zeros((B, (L + 15) // 16), dtype=torch.int32, device="cuda")
        variants = {"ours fresh (shipped)": lambda m=_sweep.metadata(B, L, L, table):
                    pa.paged_attention(q, kc, kc, m, SCALE, fresh=fresh)}
        for name, c in CANDIDATES.items():
            variants[name] = lambda c=c, m=_sweep.metadata(B, L, L, table): candidate(q, k2d, v2d, m, *c)
        ref = variants["ours fresh (shipped)"]().float()
        res, diffs = checked_rounds(case, variants, lambda out: ((out.float() - ref).norm() / ref.norm()).item())
        for name, xs in res.items():
            ms = xs[len(xs) // 2]
            print(f"{case} | {name} | {ms:.4f} ms | {4 * B * (L * L / 2) * HD * H / ms / 1e9:.0f} TFLOP/s | "
                  f"diff vs shipped {diffs[name]:.1e}", flush=True)


if __name__ == "__main__":
    main()
