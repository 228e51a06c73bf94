# Prompt attention (whole prompts, no cached prefix) of the Llama-3-8B shape (32 query / 8 KV heads, head_dim 128,
# bf16): our Triton kernel (kernels/paged_attention.py) over the paged cache, the same kernel over the step's own
# token-major K/V (views into a fused qkv buffer, as the model passes them; FRESH_LAUNCHES sweeps its launch), and
# PyTorch's fused kernels over the same K/V: scaled_dot_product_attention with its cuDNN or FlashAttention-2 backend
# forced, over [B, H, L, D] views of the [tokens, heads, dim] buffers (equal-length prompts only), GQA by
# enable_gqa, and the varlen FlashAttention op (ragged prompts as one flat batch). Every candidate is checked against
# the fp64 reference of the first sequences; times are CUDA-graph replays of one call in interleaved rounds
# (gpu_timing), median round; TFLOP/s of the causal attention. A candidate that fails prints why.
# --plans: host time of cuDNN's first call at shapes not seen before (it builds an execution plan per shape), and of
# its packed (THD, ragged) call, which builds one on every call.
# (It replaces bench/gpu-attention-flash-varlen.py, the sixteenth session's paged-against-varlen comparison.)
#   python3 bench/gpu-attention-prefill-sdpa.py [--cases 16x512,8x1024,4x2048,1x4096,64x128] [--plans]
import argparse
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, HERE)

from bench_scripts import load_script  # noqa: E402
from gpu_timing import checked_rounds  # noqa: E402
from lmi_executor.attention import reference_attention  # noqa: E402
from lmi_executor.kernels import paged_attention as pa  # noqa: E402

KVH, HD, H = 8, 128, 32
SCALE = HD**-0.5
_sweep = load_script("gpu-attention-fp8-sweep.py")
# Launches of our kernel over the fresh K/V (block_q tokens x 4 heads a program, block_n keys a tile, warps, stages).
FRESH_LAUNCHES = [None] + [{"block_q": bq, "block_n": bn, "num_warps": w, "num_stages": st, "head_fast": False}
                           for bq, bn, w, st in ((16, 64, 4, 2), (16, 64, 4, 3), (16, 128, 8, 2), (32, 64, 8, 2),
                                                 (32, 64, 8, 3), (32, 128, 8, 2), (32, 32, 4, 2), (16, 32, 4, 3),
                                                 (16, 32, 4, 4), (16, 32, 4, 5), (16, 64, 4, 4), (32, 64, 8, 4),
                                                 (32, 32, 8, 3))]


def contiguous(cache, table, B, L):
    """The first L tokens of each sequence, gathered from the paged cache: [B * L, KVH, HD]."""
    page = cache.shape[1]
    pos = torch.arange(L, device=cache.device)
    slots = (table[:, pos // page].long() * page + pos % page).reshape(-1)
    return cache.view(-1, KVH, HD)[slots].contiguous()


def sdpa_call(backend, q4, k4, v4):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    b = getattr(SDPBackend, backend)

    def run():
        with sdpa_kernel([b]):
            return F.scaled_dot_product_attention(q4, k4, v4, is_causal=True, scale=SCALE, enable_gqa=True)
    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="16x512,8x1024,4x2048,1x4096,64x128")
    ap.add_argument("--plans", action="store_true", help="also time cuDNN's first calls at new shapes")
    a = ap.parse_args()
    print(f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, {torch.cuda.get_device_name()}")
    for case in a.cases.split(","):
        B, L = (int(x) for x in case.split("x"))
        q, k, v, table = _sweep.inputs(B, L, L, torch.bfloat16)
        # The fresh K/V of the step, contiguous in token order: [T, KVH, D] (what the paged cache holds).
        kd, vd = contiguous(k, table, B, L), contiguous(v, table, B, L)
        n_ref = min(B, 2)
        ref = reference_attention(q[: n_ref * L].double(), k.double(), v.double(),
                                  _sweep.metadata(n_ref, L, L, table[:n_ref]), SCALE)
        # [B, H, L, D] views of the token-major buffers (strided: heads are not the outer dimension in memory).
        q4 = q.view(B, L, H, HD).transpose(1, 2)
        k4 = kd.view(B, L, KVH, HD).transpose(1, 2)
        v4 = vd.view(B, L, KVH, HD).transpose(1, 2)
        # The fresh K/V as the model passes them: views into one fused qkv buffer [T, (H + 2 KVH) D].
        qkv = torch.cat([q.reshape(B * L, H * HD), kd.reshape(B * L, KVH * HD), vd.reshape(B * L, KVH * HD)], 1)
        fresh = (qkv[:, H * HD: (H + KVH) * HD].view(B * L, KVH, HD), qkv[:, (H + KVH) * HD:].view(B * L, KVH, HD))
        variants = {"ours (paged)": lambda m=_sweep.metadata(B, L, L, table): pa.paged_attention(q, k, v, m, SCALE)}
        for la in FRESH_LAUNCHES:
            name = "ours fresh " + ("tuned" if la is None else "/".join(str(x) for x in la.values()))
            variants[name] = (lambda la=la, m=_sweep.metadata(B, L, L, table):
                              pa.paged_attention(q, k, v, m, SCALE, launch=la, fresh=fresh))
        for backend in ("CUDNN_ATTENTION", "FLASH_ATTENTION"):
            f = sdpa_call(backend, q4, k4, v4)
            variants[backend.lower()] = lambda f=f: f().transpose(1, 2).reshape(B * L, H, HD)
        cu = torch.arange(0, (B + 1) * L, L, dtype=torch.int32, device="cuda")

        def varlen():
            out = torch.ops.aten._flash_attention_forward(q, kd, vd, cu, cu, L, L, 0.0, True, False, scale=SCALE)
            return out[0]
        variants["flash varlen"] = varlen
        res, errs = checked_rounds(case, variants,
                                   lambda out: ((out[: n_ref * L].double() - ref).norm() / ref.norm()).item())
        for name, xs in res.items():
            ms = xs[len(xs) // 2]
            print(f"{case} | {name} | {ms:.4f} ms | {4 * B * (L * L / 2) * HD * H / ms / 1e9:.0f} TFLOP/s | "
                  f"err {errs[name]:.1e}", flush=True)
    if a.plans:
        first_call_latency()
        packed_plans()


def packed_plans():
    """The packed (THD) cuDNN call: is its plan reused when only the sequence boundaries change (same sequence count
    and bound), and what does a new count or bound cost? Ragged lengths checked against the reference."""
    import time
    T = 8192
    q = torch.randn(T, H, HD, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(T, KVH, HD, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(T, KVH, HD, device="cuda", dtype=torch.bfloat16)
    from lmi_executor.attention import AttentionMetadata
    for lens, bound in (([512] * 16, 512), ([300, 700, 1000, 24] + [512] * 12, 1024), ([100, 900, 512, 512] + [512] * 12,
                        1024), ([512] * 16, 1024), ([512] * 15, 1024), ([512] * 15 + [0], 1024), ([4096, 4096], 4096)):
        offs = [0]
        for n in lens:
            offs.append(offs[-1] + n)
        cu = torch.tensor(offs, dtype=torch.int32, device="cuda")
        n = offs[-1]
        ts = []
        for _ in range(2):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = torch.ops.aten._cudnn_attention_forward(q[:n], k[:n], v[:n], None, cu, cu, bound, bound, False, 0.0, True,
                                                          False, scale=SCALE)[0]
            torch.cuda.synchronize()
            ts.append(1000 * (time.perf_counter() - t0))
        # Reference over a paged copy of the same K/V (16-token pages in order).
        nz = [i for i, m in enumerate(lens) if m][:2]
        err = []
        for i in nz:
            a, m = offs[i], lens[i]
            nb = (m + 15) // 16
            kc = torch.zeros(nb * 16, KVH, HD, device="cuda", dtype=torch.bfloat16)
            vc = torch.zeros_like(kc)
            kc[:m], vc[:m] = k[a:a + m], v[a:a + m]
            meta = AttentionMetadata(slot_mapping=torch.zeros(m, dtype=torch.long, device="cuda"),
                                     query_start_loc=torch.tensor([0, m], dtype=torch.int32, device="cuda"),
                                     seq_lens=torch.tensor([m], dtype=torch.int32, device="cuda"),
                                     block_tables=torch.arange(nb, dtype=torch.int32, device="cuda")[None],
                                     max_query_len=m, max_seq_len=m, query_start_loc_cpu=[0, m], seq_lens_cpu=[m])
            ref = reference_attention(q[a:a + m].double(), kc.view(nb, 16, KVH, HD).double(),
                                      vc.view(nb, 16, KVH, HD).double(), meta, SCALE)
            err.append(((out[a:a + m].double() - ref).norm() / ref.norm()).item())
        print(f"packed {len(lens)} seqs (bound {bound}, lens {lens[:4]}...): first {ts[0]:.1f} ms, then {ts[1]:.2f} ms, "
              f"err {max(err):.1e}", flush=True)


def first_call_latency():
    """Host wall time of the first cuDNN call at shapes not seen before (its execution plan is built then), and of
    a second call at the same shape."""
    import time
    for B, L in ((3, 700), (5, 333), (2, 1500), (16, 511), (7, 129)):
        q = torch.randn(B * L, H, HD, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(B * L, KVH, HD, device="cuda", dtype=torch.bfloat16)
        f = sdpa_call("CUDNN_ATTENTION", q.view(B, L, H, HD).transpose(1, 2), k.view(B, L, KVH, HD).transpose(1, 2),
                      k.view(B, L, KVH, HD).transpose(1, 2))
        ts = []
        for _ in range(2):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            f()
            torch.cuda.synchronize()
            ts.append(1000 * (time.perf_counter() - t0))
        print(f"first calls {B}x{L}: {ts[0]:.1f} ms, then {ts[1]:.2f} ms", flush=True)


if __name__ == "__main__":
    main()
