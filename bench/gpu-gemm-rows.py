# Wave quantization of the prefill GEMMs: per-token time of the four Llama-3-8B layer GEMMs (qkv, o, gate_up,
# down; cuBLAS through F.linear, bf16) at prefill row counts around the default token budget of 8,192, two
# passes. Weights rotate over copies (> 200 MB per shape) so L2 serves none of them.
#   python3 bench/gpu-gemm-prefill-rows.py [--rows 7680,7920,8192,8448,8704,9216,10560,16384] [--passes 2]
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu_timing import graph_time  # noqa: E402

SHAPES = {"qkv": (6144, 4096), "o": (4096, 4096), "gate_up": (28672, 4096), "down": (4096, 14336)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="7680,7920,8192,8448,8704,9216,10560,16384")
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--blas", default="cublas", help="comma-separated: cublas, cublaslt")
    args = ap.parse_args()
    ws = {n: [torch.randn(N, K, device="cuda", dtype=torch.bfloat16) * 0.02
              for _ in range(max(2, int(200e6 // (N * K * 2)) + 1))] for n, (N, K) in SHAPES.items()}
    x = torch.randn(8192, 4096, device="cuda", dtype=torch.bfloat16)
    graph_time([lambda: F.linear(x, ws["gate_up"][0])], reps=20, replays_per_timing=20)  # warm the clocks
    flops_per_row = 2 * sum(N * K for N, K in SHAPES.values())
    for _ in range(args.passes):
        for M, lib in ((int(m), lib) for m in args.rows.split(",") for lib in args.blas.split(",")):
            torch.backends.cuda.preferred_blas_library(lib)
            r, total = {"rows": M, "blas": lib}, 0.0
            for name, (N, K) in SHAPES.items():
                x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
                ms = graph_time([lambda w=w: F.linear(x, w) for w in ws[name]], reps=9)
                r[name + "_us"] = round(ms * 1e3, 1)
                total += ms
            r["layer_us"] = round(total * 1e3, 1)
            r["ns_per_token"] = round(total * 1e6 / M, 2)
            r["TFLOPs"] = round(flops_per_row * M / total / 1e9, 1)
            print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
