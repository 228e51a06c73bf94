# Does the memory-bound part of a prompt step's MLP (RMSNorm, SiLU-and-mul: ~10 ms of a 16 x 512 step) hide under its
# GEMMs when the rows run as two halves on two streams? Per layer, as the general forward does it for prompt-sized
# steps (the residual added inside the down GEMM): h = norm(residual); gu = h @ Wgu.T; a = silu(gu) * up;
# residual += a @ Wd.T. "halves": rows [0, R/2) and [R/2, R) pipelined so that SiLU of one half runs on a second
# stream while the other half's gate_up or down GEMM runs. Llama-3-8B shapes, --layers layers of distinct weights
# (so L2 serves no weights), one CUDA graph per variant, each replayed alone for --secs (the card at its power limit,
# as in a burst's prompt steps; gpu_timing.sustained_replay), --rounds rounds in rotating order. The residual
# after one pass is compared between the variants first.
#   python3 bench/gpu-prefill-mlp-overlap.py [--rows 8192] [--layers 4] [--secs 1.0] [--rounds 3]
import argparse
import os
import statistics
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, HERE)

from gpu_timing import sustained_replay  # noqa: E402
from lmi_executor.kernels import fused  # noqa: E402
from lmi_executor.quant import linear  # noqa: E402

H, I, EPS = 4096, 14336, 1e-5


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=8192)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--secs", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    R, half = a.rows, a.rows // 2
    dev = "cuda"
    torch.manual_seed(0)
    layers = [(torch.randn(2 * I, H, device=dev, dtype=torch.bfloat16) * 0.02,
               torch.randn(H, I, device=dev, dtype=torch.bfloat16) * 0.02,
               torch.rand(H, device=dev, dtype=torch.bfloat16) + 0.5) for _ in range(a.layers)]
    x0 = torch.randn(R, H, device=dev, dtype=torch.bfloat16)
    residual = x0.clone()
    side = torch.cuda.Stream()

    def mlp(r, wgu, wd, nw):
        h = fused.add_rms_norm(r, None, nw, EPS)
        r.addmm_(fused.silu_and_mul(linear(h, wgu)), wd.t())

    def sequential():
        for wgu, wd, nw in layers:
            mlp(residual, wgu, wd, nw)

    def halves():
        main_s = torch.cuda.current_stream()
        ra, rb = residual[:half], residual[half:]
        for wgu, wd, nw in layers:
            gua = linear(fused.add_rms_norm(ra, None, nw, EPS), wgu)
            side.wait_stream(main_s)
            with torch.cuda.stream(side):
                aa = fused.silu_and_mul(gua)  # under B's gate_up
            gub = linear(fused.add_rms_norm(rb, None, nw, EPS), wgu)
            main_s.wait_stream(side)
            side.wait_stream(main_s)
            with torch.cuda.stream(side):
                ab = fused.silu_and_mul(gub)  # under A's down
            ra.addmm_(aa, wd.t())
            main_s.wait_stream(side)
            rb.addmm_(ab, wd.t())

    variants = {"sequential": sequential, "halves, two streams": halves}
    outs = {}
    for name, f in variants.items():
        residual.copy_(x0)
        g = torch.cuda.CUDAGraph()
        f()  # warm-up (Triton compiles, cuBLAS picks)
        torch.cuda.synchronize()
        residual.copy_(x0)
        with torch.cuda.graph(g):
            f()
        residual.copy_(x0)
        g.replay()
        torch.cuda.synchronize()
        outs[name] = residual.clone()
        variants[name] = g
    ref = outs["sequential"].float()
    for name, o in outs.items():
        err = ((o.float() - ref).abs().max() / ref.abs().max()).item()
        print(f"{name}: residual after one pass, max rel diff against sequential {err:.2e}", flush=True)
    res = {n: [] for n in variants}
    names = list(variants)
    for r in range(a.rounds):
        for n in names[r % len(names):] + names[: r % len(names)]:
            g = variants[n]
            residual.copy_(x0)
            res[n].append(sustained_replay(g, a.secs))
    base = statistics.median(v[0] for v in res["sequential"])
    for n in names:
        ms = statistics.median(v[0] for v in res[n])
        print(f"{n:22s} {ms / a.layers:.3f} ms a layer ({ms / base:.3f}x)  "
              f"{statistics.median(v[1] for v in res[n]):.0f} MHz {statistics.median(v[2] for v in res[n]):.0f} W  "
              f"rounds {' '.join(f'{v[0] / a.layers:.3f}' for v in res[n])}", flush=True)


if __name__ == "__main__":
    main()
