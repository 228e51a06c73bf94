# Decode attention at the burst's batch with one or two KV heads per program: kernels/paged_attention.py gives each
# program one (sequence, KV head) and reads that head's 256-byte rows of each page; a program that takes two adjacent
# KV heads issues both heads' loads together (512 contiguous bytes a key in the cache's slot-major layout) and runs
# twice as long (half the programs). The candidate kernel lives here (plain decode: no rotary, no splits); it is
# checked against paged_attention's output first. Llama-3-8B attention shape, bf16 cache; CUDA graphs of 4 calls over
# disjoint inputs, interleaved rounds; block tables drawn at random or in order.
#   python3 bench/gpu-decode-heads-per-program.py [--cases 256x520,256x640,256x768]
import argparse
import os
import sys

import torch
import triton
import triton.language as tl

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, HERE)

from bench_scripts import load_script  # noqa: E402
from gpu_timing import graph_of, interleaved_rounds  # noqa: E402
from lmi_executor.kernels import paged_attention as pa  # noqa: E402

_sweep = load_script("gpu-attention-fp8-sweep.py")
H, KVH, HD, PAGE = 32, 8, 128, 16
SCALE = HD**-0.5


@triton.jit
def _tile(q, m_i, l_i, acc, k_ptr, v_ptr, off, ok, qk_scale):
    k = tl.load(k_ptr + off, mask=ok[:, None], other=0.0)
    s = tl.dot(q, tl.trans(k))
    s = tl.where(ok[None, :], s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1) * qk_scale)
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(s * qk_scale - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    v = tl.load(v_ptr + off, mask=ok[:, None], other=0.0)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
    return m_new, l_i, acc


@triton.jit
def _decode_kernel(q_ptr, k_ptr, v_ptr, out_ptr, seq_lens_ptr, bt_ptr, bt_stride, scale,
                   NQ: tl.constexpr, NKV: tl.constexpr, GROUP: tl.constexpr, HPP: tl.constexpr,
                   BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, PAGE: tl.constexpr):
    kvh0 = tl.program_id(0) * HPP
    seq = tl.program_id(1)
    ctx = tl.load(seq_lens_ptr + seq)
    m_idx = tl.arange(0, 16)
    d = tl.arange(0, HEAD_DIM)
    row_ok = m_idx < GROUP
    qa_off = (seq * NQ + kvh0 * GROUP + m_idx)[:, None] * HEAD_DIM + d[None, :]
    qa = tl.load(q_ptr + qa_off, mask=row_ok[:, None], other=0.0)
    qk_scale = scale * 1.4426950408889634
    ma = tl.full([16], -1.0e30, dtype=tl.float32)
    la = tl.zeros([16], dtype=tl.float32)
    acca = tl.zeros([16, HEAD_DIM], dtype=tl.float32)
    if HPP == 2:
        qb = tl.load(q_ptr + qa_off + GROUP * HEAD_DIM, mask=row_ok[:, None], other=0.0)
        mb = tl.full([16], -1.0e30, dtype=tl.float32)
        lb = tl.zeros([16], dtype=tl.float32)
        accb = tl.zeros([16, HEAD_DIM], dtype=tl.float32)
    n_idx = tl.arange(0, BLOCK_N)
    for start in range(0, ctx, BLOCK_N):
        kv_pos = start + n_idx
        ok = kv_pos < ctx
        blk = tl.load(bt_ptr + seq * bt_stride + kv_pos // PAGE, mask=ok, other=0).to(tl.int64)
        off = ((blk * PAGE + kv_pos % PAGE) * NKV + kvh0)[:, None] * HEAD_DIM + d[None, :]
        ma, la, acca = _tile(qa, ma, la, acca, k_ptr, v_ptr, off, ok, qk_scale)
        if HPP == 2:
            mb, lb, accb = _tile(qb, mb, lb, accb, k_ptr, v_ptr, off + HEAD_DIM, ok, qk_scale)
    tl.store(out_ptr + qa_off, (acca / la[:, None]).to(out_ptr.dtype.element_ty), mask=row_ok[:, None])
    if HPP == 2:
        tl.store(out_ptr + qa_off + GROUP * HEAD_DIM, (accb / lb[:, None]).to(out_ptr.dtype.element_ty),
                 mask=row_ok[:, None])


def candidate(q, k, v, meta, hpp, block_n, warps, stages):
    B = meta.seq_lens.shape[0]
    out = torch.empty_like(q)
    _decode_kernel[(KVH // hpp, B)](q, k, v, out, meta.seq_lens, meta.block_tables, meta.block_tables.stride(0),
                                    SCALE, NQ=H, NKV=KVH, GROUP=H // KVH, HPP=hpp, BLOCK_N=block_n, HEAD_DIM=HD,
                                    PAGE=PAGE, num_warps=warps, num_stages=stages)
    return out


CANDIDATES = {"1 head, 64 keys, 4 warps, 3 stages": (1, 64, 4, 3), "2 heads, 64, 4, 3": (2, 64, 4, 3),
              "2 heads, 32, 4, 3": (2, 32, 4, 3), "2 heads, 64, 4, 2": (2, 64, 4, 2),
              "2 heads, 32, 4, 4": (2, 32, 4, 4), "2 heads, 64, 8, 2": (2, 64, 8, 2)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="256x520,256x640,256x768")
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args()
    for case in a.cases.split(","):
        B, ctx = (int(x) for x in case.split("x"))
        for order in ("random", "in order"):
            sets = []
            for seed in range(4):
                q, k, v, table = _sweep.inputs(B, ctx, 1, torch.bfloat16, seed=seed)
                if order == "in order":
                    table = torch.arange(table.numel(), device=table.device, dtype=torch.int32).view(table.shape)
                sets.append((q, k, v, _sweep.metadata(B, ctx, 1, table)))
            ref = pa.paged_attention(*sets[0], SCALE)
            fns = {"paged_attention": lambda s: pa.paged_attention(*s, SCALE)}
            for name, c in CANDIDATES.items():
                fns[name] = lambda s, c=c: candidate(*s, *c)
            graphs, notes = {}, {}
            for name, f in fns.items():
                try:
                    out = f(sets[0])
                except Exception as e:  # noqa: BLE001 - a launch that does not fit: say so, time the rest
                    print(f"  {name}: {type(e).__name__}: {str(e)[:120]}", flush=True)
                    continue
                notes[name] = (out.float() - ref.float()).abs().max().item()
                graphs[name] = graph_of([lambda s=s, f=f: f(s) for s in sets])
            res = interleaved_rounds(graphs, rounds=a.rounds, replays=20)
            kv = 2 * B * ctx * KVH * HD * 2
            print(f"batch {B} x {ctx}, blocks {order}:", flush=True)
            for name, xs in res.items():
                us = xs[len(xs) // 2] * 1000 / 4
                print(f"  {name:36s} {us:7.1f} us  {kv / us / 1e6:.3f} TB/s  max diff {notes[name]:.1e}", flush=True)
            del graphs, sets


if __name__ == "__main__":
    main()
