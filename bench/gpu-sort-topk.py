# What the draw kernels' stable sort costs against torch.topk, over a decode step's logits (Llama-3 vocabulary,
# 128,256): CUDA graphs of one call each, interleaved rounds (gpu_timing.interleaved_rounds), median µs, at 256 rows
# and at one, bf16 and fp32. A lead for sampled steps (docs/benchmarks.md, seventeenth session).
#   python3 bench/gpu-sort-topk.py
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu_timing import graph_of, interleaved_rounds  # noqa: E402


def main():
    dev = "cuda"
    for R in (256, 1):
        x = (torch.randn(R, 128256, device=dev) * 2).to(torch.bfloat16)
        xf = x.float()
        cands = {
            "sort_bf16": lambda x=x: x.sort(dim=-1, descending=True, stable=True),
            "sort_fp32": lambda x=xf: x.sort(dim=-1, descending=True, stable=True),
        }
        for k in (256, 1024, 4096):
            cands[f"topk{k}_bf16"] = lambda x=x, k=k: torch.topk(x, k, dim=-1, sorted=True)
            cands[f"topk{k}_fp32"] = lambda x=xf, k=k: torch.topk(x, k, dim=-1, sorted=True)
        graphs = {n: graph_of([f]) for n, f in cands.items()}
        res = interleaved_rounds(graphs, rounds=5, replays=20)
        print(f"{R} rows:", {n: round(v[len(v) // 2] * 1000, 1) for n, v in res.items()}, "us")


if __name__ == "__main__":
    main()
