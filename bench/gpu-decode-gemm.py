# The candidate decode-bucket GEMM (bench/cuda/decode_gemm.cu through bench/decode_gemm_lib.py: the activation tile
# multicast across a 2-CTA cluster, a persistent stream-K schedule) against what serves the 256-row decode projections without it: the cuBLASLt table entry
# (kernels/lt_gemm.py) where the shipped table has one, and torch's F.linear.
# For each Llama-3-8B shape at 256 rows: each candidate's error against an fp32 reference (max |y - ref| / max |ref|,
# next to F.linear's own), then CUDA graphs of one launch per rotating weight copy (> 400 MB, so L2 serves no
# weights), timed two ways: short interleaved rounds (gpu_timing.interleaved_rounds), and, with --secs > 0, each
# candidate replayed alone for --secs seconds so the card sits at its power limit as in a burst's decode phase
# (gpu_timing.sustained_replay), --rounds rounds in rotating order, with the SM clock and board power.
# --variants name=DEF[+DEF...],... adds builds of the kernel with DG_* macros defined (its stage count, cluster size,
# or a stage left out: DG_SKIP_LOAD, DG_SKIP_MMA, whose outputs are not checked) as more candidates.
#   python3 bench/gpu-decode-gemm.py [--shapes qkv,o,gate_up,down,lm_head] [--secs 0.4] [--rounds 3]
#       [--variants c1=DG_CLUSTER=1,noload=DG_SKIP_LOAD]
import argparse
import math
import os
import statistics
import sys

import torch
import torch.nn.functional as F

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_HERE, "..", "python"))
sys.path.insert(0, _HERE)
from gpu_timing import graph_of, interleaved_rounds, sustained_replay  # noqa: E402
import decode_gemm_lib as decode_gemm  # noqa: E402
from lmi_executor.kernels import lt_gemm  # noqa: E402

SHAPES = {"qkv": (6144, 4096), "o": (4096, 4096), "gate_up": (28672, 4096), "down": (4096, 14336),
          "lm_head": (128256, 4096)}
ROWS = 256


def rel_err(y, ref):
    return ((y.float() - ref).abs().max() / ref.abs().max()).item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="qkv,o,gate_up,down,lm_head")
    ap.add_argument("--secs", type=float, default=0.4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--variants", default="")
    args = ap.parse_args()
    dg = decode_gemm.get()
    print(torch.cuda.get_device_name(), torch.__version__, "| decode GEMM:", decode_gemm.status(), "| cuBLASLt:",
          "on" if lt_gemm.get() is not None else lt_gemm.status(), flush=True)
    if dg is None:
        raise SystemExit(1)
    lt = lt_gemm.get()
    variants = {}
    for spec in filter(None, args.variants.split(",")):
        vname, defs = spec.split("=", 1)
        variants[vname] = (decode_gemm.DecodeGemm(decode_gemm.build(decode_gemm.nvcc_path(), decode_gemm.cache_dir(),
                                                                    defs.split("+"))), "SKIP" in defs)
    torch.manual_seed(0)
    for name in args.shapes.split(","):
        N, K = SHAPES[name]
        copies = max(2, min(16, math.ceil(400e6 / (N * K * 2))))
        ws = [torch.randn(N, K, device="cuda", dtype=torch.bfloat16) * 0.02 for _ in range(copies)]
        x = torch.randn(ROWS, K, device="cuda", dtype=torch.bfloat16)
        ref = x.float() @ ws[0].float().t()
        cands = {"F.linear": lambda w: F.linear(x, w), "ours": lambda w: dg.linear(x, w)}
        if lt is not None and lt.linear(x, ws[0]) is not None:
            cands["cuBLASLt table"] = lambda w: lt.linear(x, w)
        for vname, (v, _) in variants.items():
            cands[vname] = lambda w, v=v: v.linear(x, w)
        errs = {}
        for k, fn in cands.items():
            y = fn(ws[0])
            torch.cuda.synchronize()
            if k in variants and variants[k][1]:
                continue  # a stage left out: the output means nothing
            errs[k] = float("nan") if y is None or not torch.isfinite(y).all() else rel_err(y, ref)
        # Every copy, not only the first: a wrong tile or stage would show on some weights and not others.
        worst = max(rel_err(dg.linear(x, w), x.float() @ w.float().t()) for w in ws[:4])
        # The stream-K partials are added in a fixed order: the same inputs give the same bits.
        same = all(torch.equal(dg.linear(x, ws[0]), dg.linear(x, ws[0])) for _ in range(3))
        graphs = {k: graph_of([lambda w=w, fn=fn: fn(w) for w in ws]) for k, fn in cands.items()}
        short = interleaved_rounds(graphs, rounds=7, replays=20)
        flop = 2.0 * ROWS * N * K
        print(f"{name} {ROWS} x {N} x {K}: error vs fp32 " + ", ".join(f"{k} {v:.2e}" for k, v in errs.items())
              + f" (ours, worst of 4 weights: {worst:.2e}; repeats bit-equal: {same})", flush=True)
        base = statistics.median(short["F.linear"]) / copies
        for k, xs in short.items():
            ms = statistics.median(xs) / copies
            print(f"  short      {k:15s} {ms * 1e3:7.1f} us  {flop / ms / 1e9:4.0f} TF/s  {N * K * 2 / ms / 1e9:5.2f} "
                  f"TB/s of weights  {ms / base:5.3f}x", flush=True)
        if args.secs > 0:
            res = {k: [] for k in graphs}
            names = list(graphs)
            for r in range(args.rounds):
                for k in names[r % len(names):] + names[: r % len(names)]:
                    res[k].append(sustained_replay(graphs[k], args.secs))
            base = statistics.median(v[0] for v in res["F.linear"]) / copies
            for k, v in res.items():
                ms = statistics.median(t[0] for t in v) / copies
                print(f"  sustained  {k:15s} {ms * 1e3:7.1f} us  {flop / ms / 1e9:4.0f} TF/s  {ms / base:5.3f}x  "
                      f"{statistics.median(t[1] for t in v):5.0f} MHz {statistics.median(t[2] for t in v):4.0f} W  "
                      f"rounds {' '.join(f'{t[0] / copies * 1e3:.1f}' for t in v)}", flush=True)
        del graphs, ws
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
