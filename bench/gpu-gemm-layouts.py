# cuBLAS on the Llama-3-8B layer shapes by operand layout, at decode-256 and prefill-8192 rows: F.linear(x, W) with
# W [N, K] as stored today; x @ Wt with the weight stored [K, N]; W @ x^T as a view (output [N, M]) and W @ xT with
# x^T contiguous; F.linear without reduced-precision reductions; cuBLASLt for the [K, N] and swapped forms. Each cell:
# microseconds a call (bench/gpu_timing.graph_time over rotating weight copies, > 200 MB, so L2 serves none).
# Two rounds; the last line sums each form per decode / prefill step (32 layers + the LM head at 256 rows).
#   python3 bench/gpu-gemm-layouts.py
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu_timing import graph_time  # noqa: E402

SHAPES = {"qkv": (6144, 4096), "o": (4096, 4096), "gate_up": (28672, 4096), "down": (4096, 14336),
          "lm_head": (128256, 4096)}


def main():
    total = {}
    for _ in range(2):
        for M in (256, 8192):
            for name, (N, K) in SHAPES.items():
                if name == "lm_head" and M > 256:
                    continue
                copies = max(2, int(200e6 // (N * K * 2)) + 1)
                ws = [torch.randn(N, K, device="cuda", dtype=torch.bfloat16) * 0.02 for _ in range(copies)]
                wts = [w.t().contiguous() for w in ws]
                x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
                xt = x.t().contiguous()
                forms = {
                    "linear": [lambda w=w: F.linear(x, w) for w in ws],
                    "x @ Wt[K,N]": [lambda w=w: torch.mm(x, w) for w in wts],
                    "W @ x^T (view)": [lambda w=w: torch.mm(w, x.t()) for w in ws],
                    "W @ xT (contiguous)": [lambda w=w: torch.mm(w, xt) for w in ws],
                }
                row = {"M": M, "shape": name}
                for form, fns in forms.items():
                    ms = graph_time(fns, reps=15)
                    row[form] = round(ms * 1e3, 1)
                    total[(M, form)] = total.get((M, form), 0.0) + ms * (1 if name == "lm_head" else 32) / 2
                torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
                row["linear, no reduced-precision reduction"] = round(graph_time(forms["linear"], reps=15) * 1e3, 1)
                torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = True
                torch.backends.cuda.preferred_blas_library("cublaslt")
                row["cuBLASLt x @ Wt[K,N]"] = round(graph_time(forms["x @ Wt[K,N]"], reps=15) * 1e3, 1)
                row["cuBLASLt W @ xT"] = round(graph_time(forms["W @ xT (contiguous)"], reps=15) * 1e3, 1)
                torch.backends.cuda.preferred_blas_library("cublas")
                print(json.dumps(row), flush=True)
                del ws, wts
    print(json.dumps({f"{m} rows, {form}": round(v, 3) for (m, form), v in total.items()}),
          "ms a step (32 layers, + LM head at 256 rows; mean of the rounds)")


if __name__ == "__main__":
    main()
