# Our decode-bucket GEMM (python/lmi_executor/kernels/decode_gemm.py and cuda/decode_gemm.cu) against what serves
# the 256-row decode projections without it: the cuBLASLt table entry (kernels/lt_gemm.py) where the shipped table has
# one, and torch's F.linear. For each Llama-3-8B shape at 256 rows: the plain kernel at each tile size that divides N
# ("dg64", "dg96", "dg112"); with --swiglu, gate_up + SiLU-and-mul fused ("dg swiglu", what the executor uses)
# against the GEMM followed by kernels/fused.py's silu_and_mul. Each candidate's error against an fp32 reference
# (max |y - ref| / max |ref|), then CUDA graphs of one launch per rotating weight copy (> 400 MB, so L2 serves no
# weights), timed two ways: short interleaved rounds (gpu_timing.interleaved_rounds), and, with --secs > 0, each
# candidate replayed alone for --secs seconds so the card sits at its power limit as in a burst's decode phase
# (gpu_timing.sustained_replay), --rounds rounds in rotating order, with the SM clock and board power.
# --variants name=DEF[+DEF],... adds builds of the kernel with DGW_* macros (stages, cache hints, grid, SiLU math).
#   python3 bench/gpu-decode-gemm.py [--shapes qkv,o,gate_up,down,lm_head] [--secs 0.4] [--rounds 3] [--swiglu]
#       [--variants s6=DGW_STAGES=6,exact=DGW_EXACT_DIV]
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
from gpu_timing import graph_of, interleaved_rounds, sustained_rounds  # noqa: E402
from lmi_executor.kernels import decode_gemm, fused, lt_gemm  # noqa: E402

SHAPES = {"qkv": (6144, 4096), "o": (4096, 4096), "gate_up": (28672, 4096), "down": (4096, 14336),
          "lm_head": (128256, 4096)}


def rel_err(y, ref):
    return ((y.float() - ref).abs().max() / ref.abs().max()).item()


def report(graphs, copies, flop, wbytes, secs, rounds, base_name="F.linear"):
    """Times already captured graphs (one launch per weight copy): interleaved short rounds, then, with secs > 0,
    each replayed alone at the power limit."""
    short = interleaved_rounds(graphs, rounds=7, replays=20)
    base = statistics.median(short[base_name]) / copies
    for k, xs in short.items():
        ms = statistics.median(xs) / copies
        print(f"  short      {k:15s} {ms * 1e3:7.1f} us  {flop / ms / 1e9:4.0f} TF/s  {wbytes / ms / 1e9:5.2f} "
              f"TB/s of weights  {ms / base:5.3f}x", flush=True)
    if secs > 0:
        res = sustained_rounds(graphs, secs, rounds)
        base = statistics.median(v[0] for v in res[base_name]) / copies
        for k, v in res.items():
            ms = statistics.median(t[0] for t in v) / copies
            print(f"  sustained  {k:15s} {ms * 1e3:7.1f} us  {flop / ms / 1e9:4.0f} TF/s  {ms / base:5.3f}x  "
                  f"{statistics.median(t[1] for t in v):5.0f} MHz {statistics.median(t[2] for t in v):4.0f} W  "
                  f"rounds {' '.join(f'{t[0] / copies * 1e3:.1f}' for t in v)}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="qkv,o,gate_up,down,lm_head")
    ap.add_argument("--secs", type=float, default=0.4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--swiglu", action="store_true", help="also gate_up with SiLU-and-mul: fused against unfused")
    ap.add_argument("--variants", default="")
    ap.add_argument("--rows", type=int, default=256, help="256: the decode bucket; 8192: a full prompt step")
    args = ap.parse_args()
    ROWS = args.rows
    dg = decode_gemm.get()
    print(torch.cuda.get_device_name(), torch.__version__, "| decode GEMM:", decode_gemm.status(), "| cuBLASLt:",
          "on" if lt_gemm.get() is not None else lt_gemm.status(), flush=True)
    if dg is None:
        raise SystemExit(1)
    kernels = {"dg": dg}
    for spec in filter(None, args.variants.split(",")):
        vname, defs = spec.split("=", 1)
        kernels[vname] = decode_gemm.DecodeGemm(decode_gemm.build(decode_gemm.nvcc_path(), decode_gemm.cache_dir(),
                                                                  defs.split("+")))
    lt = lt_gemm.get()
    torch.manual_seed(0)
    for name in args.shapes.split(","):
        N, K = SHAPES[name]
        copies = max(2, min(16, math.ceil(400e6 / (N * K * 2))))
        ws = [torch.randn(N, K, device="cuda", dtype=torch.bfloat16) * 0.02 for _ in range(copies)]
        x = torch.randn(ROWS, K, device="cuda", dtype=torch.bfloat16)
        ref = x.float() @ ws[0].float().t()
        cands = {"F.linear": lambda w: F.linear(x, w)}
        if lt is not None and lt.linear(x, ws[0]) is not None:
            cands["cuBLASLt table"] = lambda w: lt.linear(x, w)
        for kname, kern in kernels.items():
            for bn in decode_gemm.TILE_ROWS:
                if N % bn == 0 and (kname == "dg" or bn == max(b for b in decode_gemm.TILE_ROWS if N % b == 0)):
                    cands[f"{kname}{bn}"] = lambda w, kern=kern, bn=bn: kern.linear(x, w, bn)
        errs = {k: rel_err(fn(ws[0]), ref) for k, fn in cands.items()}
        # Every copy, not only the first: a wrong tile or stage would show on some weights and not others.
        worst = max(rel_err(dg.linear(x, w, b), x.float() @ w.float().t())
                    for w in ws[:4] for b in decode_gemm.TILE_ROWS if N % b == 0)
        print(f"{name} {ROWS} x {N} x {K}: error vs fp32 " + ", ".join(f"{k} {v:.2e}" for k, v in errs.items())
              + f" (dg, worst of 4 weights and the tiles: {worst:.2e})", flush=True)
        graphs = {k: graph_of([lambda w=w, fn=fn: fn(w) for w in ws]) for k, fn in cands.items()}
        report(graphs, copies, 2.0 * ROWS * N * K, N * K * 2, args.secs, args.rounds)
        del graphs
        if name == "gate_up" and args.swiglu:
            inter = N // 2
            g32, u32 = ref[:, :inter], ref[:, inter:]
            ref_out = F.silu(g32.bfloat16().float()).bfloat16().float() * u32.bfloat16().float()
            sw = {"F.linear+silu": lambda w: fused.silu_and_mul(F.linear(x, w))}
            if "cuBLASLt table" in cands:
                sw["table+silu"] = lambda w: fused.silu_and_mul(lt.linear(x, w))
            for kname, kern in kernels.items():
                for tile in (112, 224):
                    sw[f"{kname} swiglu{tile}"] = lambda w, kern=kern, tile=tile: kern.swiglu(x, w, tile)
            errs = {k: rel_err(fn(ws[0]), ref_out) for k, fn in sw.items()}
            unfused = fused.silu_and_mul(F.linear(x, ws[0])).float()
            ours = dg.swiglu(x, ws[0]).float()  # the executor's tile
            print(f"gate_up + SiLU-and-mul {ROWS} x {inter}: error vs fp32 "
                  + ", ".join(f"{k} {v:.2e}" for k, v in errs.items())
                  + f"; dg swiglu against F.linear+silu: {(ours != unfused).float().mean().item():.1%} of elements "
                  f"differ, by at most {rel_err(ours, unfused):.1e} of the largest", flush=True)
            graphs = {k: graph_of([lambda w=w, fn=fn: fn(w) for w in ws]) for k, fn in sw.items()}
            report(graphs, copies, 2.0 * ROWS * N * K, N * K * 2, args.secs, args.rounds, base_name="F.linear+silu")
            del graphs
        del ws
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
