# Prompt-step attention of kernels/paged_attention.py: the unmasked loop over the keys every row of a prompt tile
# sees (FLAGS["causal_split"]) on and off, over the tuned launch and larger tiles, with another copy of the
# kernel module (--before FILE, e.g. the previous commit's) as the baseline; a decode batch too, which the flag does
# not touch (its time shows the shared tile code compiles as before). Llama-3-8B attention shape (32 query / 8 KV
# heads, head_dim 128, bf16, 16-token pages drawn at random). Every variant is checked against the fp64
# reference first (relative error on the first sequences); times are CUDA-graph replays of one call, in
# interleaved rounds (gpu_timing.interleaved_rounds), median round; TFLOP/s of the causal attention (prompts) or
# TB/s of K+V read once (decode).
# --fresh: prompts read their own token-major K/V (the path prompt steps with no cached context take), random values;
# the variants are the tuned launch now and --before's, and "err" is against --before's output instead.
#   python3 bench/gpu-attention-prefill-ab.py [--before FILE] [--cases 16x512,1x4096,2x4096,d256x640] [--fresh]
import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, HERE)

from bench_scripts import load_file, load_script  # noqa: E402
from gpu_timing import graph_of, interleaved_rounds  # noqa: E402
from lmi_executor.attention import reference_attention  # noqa: E402
from lmi_executor.kernels import paged_attention as pa  # noqa: E402

KVH, HD, H = 8, 128, 32
SCALE = HD**-0.5
LAUNCHES = [None, {"block_q": 32, "block_n": 64, "num_warps": 8, "num_stages": 3},
            {"block_q": 32, "block_n": 64, "num_warps": 4, "num_stages": 2},
            {"block_q": 16, "block_n": 64, "num_warps": 4, "num_stages": 2}]


_sweep = load_script("gpu-attention-fp8-sweep.py")
metadata = _sweep.metadata


def inputs(B, ctx, q_len):
    return _sweep.inputs(B, ctx, q_len, torch.bfloat16)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", default="")
    ap.add_argument("--cases", default="16x512,1x4096,2x4096,d256x640")
    ap.add_argument("--fresh", action="store_true")
    a = ap.parse_args()
    before = load_file(a.before, "lmi_executor.kernels.paged_attention_before") if a.before else None
    for case in a.cases.split(","):
        decode = case.startswith("d")
        B, L = (int(x) for x in case.lstrip("d").split("x"))
        q_len = 1 if decode else L
        q, k, v, table = inputs(B, L, q_len)
        n_ref = min(B, 2)
        ref = reference_attention(q[: n_ref * q_len].double(), k.double(), v.double(),
                                  metadata(n_ref, L, q_len, table[:n_ref]), SCALE)
        # One metadata object per variant: a prompt launch caches its tile list on it (meta.tiles), which a graph
        # captured with it keeps reading.
        variants = {}
        if a.fresh and not decode:
            fresh = tuple(torch.randn(B * L, KVH, HD, device="cuda", dtype=torch.bfloat16) for _ in range(2))
            if before is not None:
                variants["before"] = (None, lambda m=metadata(B, L, q_len, table):
                                      before.paged_attention(q, k, v, m, SCALE, fresh=fresh))
            variants["fresh tuned"] = (True, lambda m=metadata(B, L, q_len, table):
                                       pa.paged_attention(q, k, v, m, SCALE, fresh=fresh))
            variants["fresh tuned again"] = variants["fresh tuned"]
            ref = None
        elif before is not None:
            variants["before"] = (None, lambda m=metadata(B, L, q_len, table): before.paged_attention(q, k, v, m, SCALE))
        for launch in [] if a.fresh and not decode else [None] if decode else LAUNCHES:
            for split in (False, True):
                name = f"{'split' if split else 'masked'} {launch or 'tuned'}"
                variants[name] = (split, lambda launch=launch, m=metadata(B, L, q_len, table):
                                  pa.paged_attention(q, k, v, m, SCALE, launch=launch))
        graphs, errs = {}, {}
        for name, (split, fn) in variants.items():
            if split is not None:
                pa.FLAGS["causal_split"] = split
            out = fn()
            if ref is None:  # --fresh: against the first variant's output
                ref = out[: n_ref * q_len].double()
            errs[name] = ((out[: n_ref * q_len].double() - ref).norm() / ref.norm()).item()
            graphs[name] = graph_of([fn])
        pa.FLAGS["causal_split"] = True
        res = interleaved_rounds(graphs, rounds=5, replays=20)
        for name, xs in res.items():
            ms = xs[len(xs) // 2]
            rate = (f"{2 * B * L * KVH * HD * 2 / ms / 1e9:.2f} TB/s" if decode
                    else f"{4 * B * (L * L / 2) * HD * H / ms / 1e9:.0f} TFLOP/s")
            print(f"{case} | {name} | {ms:.4f} ms | {rate} | err {errs[name]:.1e}", flush=True)
        del graphs


if __name__ == "__main__":
    main()
