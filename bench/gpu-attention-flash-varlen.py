# Prompt-step attention: kernels/paged_attention.py (over the paged cache) against PyTorch's FlashAttention varlen
# kernel (torch.ops.aten._flash_attention_forward over the step's own contiguous K/V, which a step of fresh prompts
# has: every key a prompt token attends to is one of its own new tokens). Llama-3-8B attention shape (32 query / 8 KV
# heads, head_dim 128, bf16, 16-token pages at random). Both checked against the fp64 reference on the first
# sequences; times are CUDA-graph replays in interleaved rounds (gpu_timing.interleaved_rounds), median round.
#   python3 bench/gpu-attention-flash-varlen.py [--cases 16x512,1x4096,4x2048,64x128]
import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, HERE)

from bench_scripts import load_script  # noqa: E402
from gpu_timing import graph_of, interleaved_rounds  # noqa: E402
from lmi_executor.attention import reference_attention  # noqa: E402
from lmi_executor.kernels import paged_attention as pa  # noqa: E402

KVH, HD, H, PAGE = 8, 128, 32, 16
SCALE = HD**-0.5
_sweep = load_script("gpu-attention-fp8-sweep.py")


def contiguous(cache, table, B, L):
    """The first L tokens of each sequence, gathered from the paged cache: [B * L, KVH, HD]."""
    pos = torch.arange(L, device=cache.device)
    slots = (table[:, pos // PAGE].long() * PAGE + pos % PAGE).reshape(-1)
    return cache.view(-1, KVH, HD)[slots].contiguous()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="16x512,1x4096,4x2048,64x128")
    a = ap.parse_args()
    for case in a.cases.split(","):
        B, L = (int(x) for x in case.split("x"))
        q, k, v, table = _sweep.inputs(B, L, L, torch.bfloat16)
        kc, vc = contiguous(k, table, B, L), contiguous(v, table, B, L)
        cu = torch.arange(0, (B + 1) * L, L, dtype=torch.int32, device="cuda")
        n_ref = min(B, 2)
        ref = reference_attention(q[: n_ref * L].double(), k.double(), v.double(),
                                  _sweep.metadata(n_ref, L, L, table[:n_ref]), SCALE)
        meta = _sweep.metadata(B, L, L, table)

        def ours():
            return pa.paged_attention(q, k, v, meta, SCALE)

        def flash():
            return torch.ops.aten._flash_attention_forward(q, kc, vc, cu, cu, L, L, 0.0, True, False, scale=SCALE)[0]

        variants = {"paged (ours)": ours, "flash varlen": flash}
        errs, graphs = {}, {}
        for name, fn in variants.items():
            try:
                out = fn()
            except Exception as e:  # noqa: BLE001 - report and go on with the others
                print(f"{case} | {name} | failed: {e}", flush=True)
                continue
            errs[name] = ((out[: n_ref * L].double() - ref).norm() / ref.norm()).item()
            graphs[name] = graph_of([fn])
        res = interleaved_rounds(graphs, rounds=5, replays=20)
        for name, xs in res.items():
            ms = xs[len(xs) // 2]
            print(f"{case} | {name} | {ms:.4f} ms | {4 * B * (L * L / 2) * HD * H / ms / 1e9:.0f} TFLOP/s | "
                  f"err {errs[name]:.1e}", flush=True)
        del graphs


if __name__ == "__main__":
    main()
