# Prefill-sized GEMMs timed the way a 256-request burst runs them: back to back for long enough that the card sits at
# its power limit (an H100 SXM draws its 700 W within a prompt step and drops its SM clock to ~1.4 GHz). Short
# interleaved timings (bench/gpu-cublaslt-algos.py) average every candidate over the same clock; here each candidate
# runs alone for --secs, so one that spends less energy per FLOP keeps a higher clock and shows it.
# For each Llama-3-8B layer shape at --rows rows: torch's F.linear and cuBLASLt's heuristic candidates (checked against
# F.linear first), each replayed from a CUDA graph over rotating weight copies (> 400 MB, so L2 serves none) for
# --secs seconds, timed over the last 60% with CUDA events, with the SM clock and the power read meanwhile (NVML
# through torch.cuda); --rounds rounds, the candidates' order rotating each round. Prints TFLOP/s, MHz and W per
# candidate (medians over rounds).
# --enumerate N adds up to N configurations cuBLASLt accepts beyond its heuristic's list (gpu-cublaslt-algos.py's
# enumeration, no split-K), each screened alone for --screen-secs; the --top fastest of those go on to the rounds. The
# shipped table's entry for the shape and row count, if any, is a candidate too ("table").
# --table-out F writes, as kernels/lt_gemm.py table entries (for the --rows row count), each shape's fastest candidate
# that beat F.linear by --margin in the median and in every round.
# --accumulate times the form y += x @ W.T instead (the prompt steps' o and down projections, which add into the
# residual stream): torch's addmm_ is the baseline and every cuBLASLt candidate runs with beta = 1 in place (a
# measurement only: kernels/lt_gemm.py serves the y = x @ W.T form; the twentieth session found nothing to serve:
# docs/benchmarks.md).
#   python3 bench/gpu-gemm-sustained.py [--rows 8192] [--shapes qkv,o,gate_up,down] [--algos 12] [--secs 0.6]
#       [--accumulate] [--table-out F]
import argparse
import importlib.util
import json
import math
import os
import statistics
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from lmi_executor.kernels import lt_gemm  # noqa: E402

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
from gpu_timing import graph_of, sustained_replay  # noqa: E402

_spec = importlib.util.spec_from_file_location("algos", os.path.join(_HERE, "gpu-cublaslt-algos.py"))
algos = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(algos)


def sustained(fns, secs):
    """Replays the graph of fns (one call each) for secs seconds (gpu_timing.sustained_replay): ms per call over the
    last 60%, and the median SM clock (MHz) and power (W) read while it ran."""
    ms, mhz, w = sustained_replay(graph_of(fns), secs)
    return ms / len(fns), mhz, w


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=8192)
    ap.add_argument("--shapes", default="qkv,o,gate_up,down")
    ap.add_argument("--algos", type=int, default=12)
    ap.add_argument("--secs", type=float, default=0.6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json-out", default="")
    ap.add_argument("--table-out", default="")
    ap.add_argument("--margin", type=float, default=0.015)
    ap.add_argument("--enumerate", type=int, default=0)
    ap.add_argument("--screen-secs", type=float, default=0.25)
    ap.add_argument("--top", type=int, default=5)
    ap.add_argument("--accumulate", action="store_true")
    args = ap.parse_args()
    acc = args.accumulate
    if acc and args.table_out:
        raise SystemExit("--table-out writes y = x @ W.T entries only; --accumulate measures")
    lib = algos.load_lt()
    workspace = torch.empty(algos.WORKSPACE, dtype=torch.uint8, device="cuda")
    print(torch.cuda.get_device_name(), torch.__version__, "cublasLt", lib.cublasLtGetVersion(), flush=True)
    M = args.rows
    out, entries = [], []
    for name in args.shapes.split(","):
        N, K = algos.SHAPES[name]
        copies = max(2, min(16, math.ceil(400e6 / (N * K * 2))))
        ws = [torch.randn(N, K, device="cuda", dtype=torch.bfloat16) * 0.02 for _ in range(copies)]
        x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
        y = torch.empty(M, N, device="cuda", dtype=torch.bfloat16)
        y0 = torch.randn(M, N, device="cuda", dtype=torch.bfloat16) if acc else None
        ref = F.linear(x, ws[0]).float() + (y0.float() if acc else 0)
        lt = algos.Lt(lib, M, N, K)

        def correct(a, lt=lt, w=ws[0], x=x, y=y, ref=ref):
            """The configuration runs and matches F.linear (a NaN-filled output first, so a skipped write shows;
            --accumulate: the residual y0 first, and the sum)."""
            if acc:
                y.copy_(y0)
            else:
                y.fill_(float("nan"))
            try:
                lt.matmul(a, w, x, y, workspace, acc)
                torch.cuda.synchronize()
            except RuntimeError:
                return False
            return ((y.float() - ref).abs().max() / ref.abs().max()).item() <= 1e-2

        # The baseline keeps the name F.linear (the table margin and the printout compare against it); with
        # --accumulate it is torch's addmm_ into y.
        if acc:
            y.copy_(y0)
            cands = {"F.linear": [lambda w=w: y.addmm_(x, w.t()) for w in ws]}
        else:
            cands = {"F.linear": [lambda w=w: F.linear(x, w) for w in ws]}
        configs = {"F.linear": None}
        algo_hex = {}
        for rank, h in enumerate(lt.heuristics(args.algos)):
            cfg = lt.config(h.algo)
            if cfg.get("reduction") == 1 or not correct(h.algo):
                continue
            key = f"lt#{rank}"
            cands[key] = [lambda w=w, a=h.algo: lt.matmul(a, w, x, y, workspace, acc) for w in ws]
            configs[key] = cfg
            algo_hex[key] = bytes(h.algo).hex()
        if args.enumerate:
            screened = []
            for a in lt.enumerate(args.enumerate, split_k=False):
                if not correct(a):
                    continue
                fns = [lambda w=w, a=a: lt.matmul(a, w, x, y, workspace, acc) for w in ws]
                screened.append((sustained(fns, args.screen_secs)[0], a, fns))
            screened.sort(key=lambda t: t[0])
            print(f"  {name}: {len(screened)} enumerated configurations screened, best "
                  f"{screened[0][0] * 1e3 if screened else float('nan'):.1f} us", flush=True)
            for i, (_, a, fns) in enumerate(screened[: args.top]):
                cands[f"en#{i}"] = fns
                configs[f"en#{i}"] = lt.config(a)
                algo_hex[f"en#{i}"] = bytes(a).hex()
        table = lt_gemm.table_for(lt_gemm.load_tables(lt_gemm.table_paths()), torch.cuda.get_device_name(),
                                  lib.cublasLtGetVersion())
        shipped = table.lookup(N, K, "bf16", M) if table is not None and not acc else None
        if shipped is not None:
            a = algos.Algo.from_buffer_copy(shipped)
            cands["table"] = [lambda w=w, a=a: lt.matmul(a, w, x, y, workspace, acc) for w in ws]
            configs["table"] = lt.config(a)
            algo_hex["table"] = shipped.hex()
        names = list(cands)
        res = {k: [] for k in names}
        for r in range(args.rounds):
            order = names[r % len(names):] + names[: r % len(names)]
            for k in order:
                res[k].append(sustained(cands[k], args.secs))
        flop = 2.0 * M * N * K
        base = statistics.median(ms for ms, _, _ in res["F.linear"])
        print(f"{name} M={M} N={N} K={K}: {len(names) - 1} cuBLASLt candidates", flush=True)
        for k in sorted(names, key=lambda k: statistics.median(ms for ms, _, _ in res[k])):
            ms = statistics.median(v[0] for v in res[k])
            mhz = statistics.median(v[1] for v in res[k])
            w = statistics.median(v[2] for v in res[k])
            print(f"  {k:9s} {ms * 1e3:8.1f} us {flop / ms / 1e9:5.0f} TF/s {ms / base:5.3f}x  {mhz:5.0f} MHz {w:4.0f} W"
                  f"  rounds {' '.join(f'{v[0] * 1e3:.1f}' for v in res[k])}  {configs[k] or ''}", flush=True)
            out.append({"shape": name, "M": M, "cand": k, "ms": ms, "mhz": mhz, "w": w, "config": configs[k],
                        "rounds": res[k]})
        base_rounds = [v[0] for v in res["F.linear"]]
        for k in sorted(names, key=lambda k: statistics.median(ms for ms, _, _ in res[k])):
            if k == "F.linear":
                break
            ms = statistics.median(v[0] for v in res[k])
            if k != "table" and ms <= base * (1 - args.margin) and all(v[0] < b for v, b in zip(res[k], base_rounds)):
                entries.append({"name": name, "n": N, "k": K, "m": M, "dtype": "bf16", "algo": algo_hex[k],
                                "us": round(ms * 1e3, 1), "torch_us": round(base * 1e3, 1), "config": configs[k],
                                "sustained": True})
            break
        del ws, cands
        torch.cuda.empty_cache()
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "rows": out}, f, indent=1)
    if args.table_out:
        with open(args.table_out, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "cublaslt": lib.cublasLtGetVersion(),
                       "torch": torch.__version__, "entries": entries}, f, indent=1)
        print(f"{len(entries)} entries -> {args.table_out}")


if __name__ == "__main__":
    main()
