# cuBLASLt's own algorithm list against what torch picks (F.linear), on the Llama-3-8B layer shapes at decode
# (64-256) and prefill (8192) rows, bf16 in, fp32 accumulate, bf16 out: y[M, N] = x[M, K] @ W[N, K]^T.
# torch asks cuBLAS for one kernel per shape (its heuristic's first answer); cuBLASLt's heuristic can return a ranked
# list of up to --algos candidates (tile, stages, split-K, swizzle, cluster shape), and the first is not always the
# fastest on a given card. Every candidate is timed (bench/gpu_timing.graph_time over rotating weight copies,
# > 400 MB, so L2 serves none) and checked against F.linear's output. Prints one line per (shape, rows) and the sum
# per decode / prefill step (32 layers, + the LM head at decode rows).
# --full N instead enumerates every configuration cuBLASLt accepts (algorithm id x tile x stages x split-K x swizzle x
# custom option x cluster shape, up to N), screens each with 3 timings, checks the fastest against F.linear and re-times
# them against torch's pick in interleaved rounds (bench/gpu_timing.interleaved_rounds).
# --write-table F keeps, per (shape, rows), the fastest checked configuration that beat F.linear by --margin, as a
# kernels/lt_gemm.py tuning table; --check-table F times a table's entries through kernels/lt_gemm.py against F.linear
# at the --ms row counts they serve, with the entry of row count m forced onto m's neighbours too when
# --check-neighbours is given (how the exact-row-count rule was found).
#   python3 bench/gpu-cublaslt-algos.py [--ms 256,128,8192] [--algos 64] [--full N [--top 4]] [--json-out F]
#   python3 bench/gpu-cublaslt-algos.py --ms 256,128,8192 --full 1500 --full-large 150 --write-table F
#   python3 bench/gpu-cublaslt-algos.py --check-table F --ms 72,96,128,160,192,224,256,4608,8192
import argparse
import ctypes
import json
import math
import os
import random
import sys
import time

import torch
import torch.nn.functional as F

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
sys.path.insert(0, os.path.join(_HERE, "..", "python"))
from gpu_timing import graph_of, graph_time, interleaved_rounds  # noqa: E402
from lmi_executor.kernels import lt_gemm  # noqa: E402

SHAPES = {"qkv": (6144, 4096), "o": (4096, 4096), "gate_up": (28672, 4096), "down": (4096, 14336),
          "lm_head": (128256, 4096)}

CUBLAS_COMPUTE_32F, CUDA_R_32F = lt_gemm.CUBLAS_COMPUTE_32F, lt_gemm.CUDA_R_32F
CUDA_R_16BF = lt_gemm.DTYPES[torch.bfloat16][1]
PREF_MAX_WORKSPACE_BYTES = 1
ALGO_CONFIG = {"id": 0, "tile": 1, "splitk": 2, "reduction": 3, "swizzle": 4, "custom": 5, "stages": 6,
               "inner": 7, "cluster": 8}
CAP = {"splitk": 0, "reduction_mask": 1, "swizzle": 2, "tiles": 6, "custom_max": 7, "stages": 13}
CLUSTER_SHAPES = (0, 2, 3, 4, 5, 6, 7, 8, 9)  # auto, 1x1, 2x1, 4x1, 1x2, 2x2, 4x2, 1x4, 2x4 (cublasLtClusterShape_t)
# Split-K reductions through the workspace only (2: in the compute type, 4: in the output type); 1 (in place, in the
# output buffer) is left out, as kernels/lt_gemm.py promises.
REDUCTION_SCHEMES = (2, 4)
WORKSPACE = lt_gemm.WORKSPACE_BYTES
Algo, HeuristicResult, check = lt_gemm.Algo, lt_gemm.HeuristicResult, lt_gemm.check


def load_lt():
    lib = lt_gemm.load_library()
    if lib is None:
        raise OSError("libcublasLt not found")
    lib.cublasLtGetVersion.restype = ctypes.c_size_t
    return lib


class Lt(lt_gemm.TnGemm):
    """kernels/lt_gemm.TnGemm (bf16) with its own handle and a workspace preference, for the searches."""

    def __init__(self, lib, M, N, K):
        super().__init__(lib, M, N, K, CUDA_R_16BF)
        self.h = ctypes.c_void_p()
        check(lib.cublasLtCreate(ctypes.byref(self.h)), "create")
        self.pref = ctypes.c_void_p()
        check(lib.cublasLtMatmulPreferenceCreate(ctypes.byref(self.pref)), "pref")
        ws = ctypes.c_uint64(WORKSPACE)
        check(lib.cublasLtMatmulPreferenceSetAttribute(self.pref, PREF_MAX_WORKSPACE_BYTES, ctypes.byref(ws),
                                                       ctypes.c_size_t(8)), "pref ws")

    def heuristics(self, count):
        res = (HeuristicResult * count)()
        got = ctypes.c_int(0)
        check(self.lib.cublasLtMatmulAlgoGetHeuristic(self.h, self.desc, self.a, self.b, self.d, self.d, self.pref,
                                                      ctypes.c_int(count), res, ctypes.byref(got)), "heuristic")
        return [res[i] for i in range(got.value) if res[i].state == 0]

    def _cap(self, algo, attr, array=False):
        size = ctypes.c_size_t(0)
        if self.lib.cublasLtMatmulAlgoCapGetAttribute(ctypes.byref(algo), attr, None, ctypes.c_size_t(0),
                                                      ctypes.byref(size)) != 0:
            return [] if array else 0
        n = max(1, size.value // 4)
        buf = (ctypes.c_uint32 * n)()
        if self.lib.cublasLtMatmulAlgoCapGetAttribute(ctypes.byref(algo), attr, buf, size, None) != 0:
            return [] if array else 0
        return list(buf) if array else buf[0]

    def _set(self, algo, attr, value, size):
        buf = ctypes.c_uint64(value)
        return self.lib.cublasLtMatmulAlgoConfigSetAttribute(ctypes.byref(algo), attr, ctypes.byref(buf),
                                                             ctypes.c_size_t(size)) == 0

    def enumerate(self, limit, split_k=True):
        """Every (algorithm id, tile, stages, split-K + reduction, swizzle, custom option, cluster shape) that
        cublasLtMatmulAlgoCheck accepts for these descriptors within the workspace; a seeded random `limit` of them
        when there are more."""
        ids = (ctypes.c_int * 256)()
        got = ctypes.c_int(0)
        check(self.lib.cublasLtMatmulAlgoGetIds(self.h, CUBLAS_COMPUTE_32F, CUDA_R_32F, CUDA_R_16BF, CUDA_R_16BF,
                                                     CUDA_R_16BF, CUDA_R_16BF, 256, ids, ctypes.byref(got)), "ids")
        out = []
        self.checks, self.custom_max = 0, 0
        spaces = []
        for algo_id in list(ids)[:got.value]:
            base = Algo()
            if self.lib.cublasLtMatmulAlgoInit(self.h, CUBLAS_COMPUTE_32F, CUDA_R_32F, CUDA_R_16BF, CUDA_R_16BF,
                                               CUDA_R_16BF, CUDA_R_16BF, algo_id, ctypes.byref(base)) != 0:
                continue
            tiles = self._cap(base, CAP["tiles"], True) or [0]
            # Stage ids: the ones the heuristic picks for this shape (the full list multiplies the search by ~30).
            seen = {self.config(h.algo).get("stages") for h in self.heuristics(64)}
            stages = [st for st in (self._cap(base, CAP["stages"], True) or [0]) if st in seen] or [0]
            splits = [1, 2, 3, 4] if self._cap(base, CAP["splitk"]) and split_k else [1]
            mask = self._cap(base, CAP["reduction_mask"])
            schemes = [b for b in REDUCTION_SCHEMES if mask & b]
            swizzles = [0, 1] if self._cap(base, CAP["swizzle"]) else [0]
            # Custom options: the first 8 (the heuristic's picks on the H100 all lie in 0-7; the reported maximum can
            # be far larger, which multiplies the search).
            self.custom_max = self._cap(base, CAP["custom_max"])
            customs = range(min(self.custom_max, 7) + 1)
            spaces.append(f"id {algo_id}: {len(tiles)} tiles x {len(stages)} stages x {len(splits)} splits x "
                          f"{len(swizzles)} swizzles x {len(customs)} options (of {self.custom_max + 1}) x "
                          f"{len(CLUSTER_SHAPES)} cluster shapes")
            for tile in tiles:
                for stage in stages:
                    for split in splits:
                        for scheme in (schemes if split > 1 else [0]):  # no split without a kept scheme
                            for swz in swizzles:
                                for custom in customs:
                                    for cluster in CLUSTER_SHAPES:
                                        a = Algo()
                                        ctypes.memmove(ctypes.byref(a), ctypes.byref(base), ctypes.sizeof(Algo))
                                        if not (self._set(a, ALGO_CONFIG["tile"], tile, 4)
                                                and self._set(a, ALGO_CONFIG["stages"], stage, 4)
                                                and self._set(a, ALGO_CONFIG["splitk"], split, 4)
                                                and self._set(a, ALGO_CONFIG["reduction"], scheme, 4)
                                                and self._set(a, ALGO_CONFIG["swizzle"], swz, 4)
                                                and self._set(a, ALGO_CONFIG["custom"], custom, 4)
                                                and self._set(a, ALGO_CONFIG["cluster"], cluster, 2)):
                                            continue
                                        res = HeuristicResult()
                                        self.checks += 1
                                        if self.lib.cublasLtMatmulAlgoCheck(self.h, self.desc, self.a, self.b, self.d,
                                                                            self.d, ctypes.byref(a),
                                                                            ctypes.byref(res)) != 0:
                                            continue
                                        if res.workspaceSize > WORKSPACE:
                                            continue
                                        out.append(a)
        self.accepted = len(out)
        self.space = "; ".join(spaces)
        if len(out) > limit:  # an even sample over every tile and option, not the first `limit` in loop order
            random.Random(0).shuffle(out)
            out = out[:limit]
        return out

    def config(self, algo):
        out = {}
        for name, attr in ALGO_CONFIG.items():
            size = ctypes.c_size_t(0)
            if self.lib.cublasLtMatmulAlgoConfigGetAttribute(ctypes.byref(algo), attr, None, ctypes.c_size_t(0),
                                                             ctypes.byref(size)) != 0:
                continue
            buf = ctypes.c_uint64(0)
            if self.lib.cublasLtMatmulAlgoConfigGetAttribute(ctypes.byref(algo), attr, ctypes.byref(buf),
                                                             size, None) == 0:
                out[name] = buf.value
        return out

    def matmul(self, algo, w, x, y, workspace, accumulate=False):
        self.run(self.h, algo, w, x, y, workspace, WORKSPACE, accumulate)


def full_search(lt, name, M, ws, x, y, workspace, limit, top, split_k=True):
    """Screen every configuration cuBLASLt accepts (3 timings each), check the `top` fastest against F.linear,
    then time torch's pick and the checked ones in interleaved rounds."""
    t0 = time.time()
    cands = lt.enumerate(limit, split_k)
    n_enum = len(cands)
    print(f"  {name} M={M}: {n_enum} kept of {lt.accepted} accepted of {lt.checks} checked ({lt.space}) "
          f"({time.time() - t0:.0f} s)", flush=True)
    cands += [h.algo for h in lt.heuristics(64) if lt.config(h.algo).get("reduction") != 1]
    screened = []
    for a in cands:
        try:
            ms = graph_time([lambda w=w, a=a: lt.matmul(a, w, x, y, workspace) for w in ws], reps=3)
        except RuntimeError:
            continue
        screened.append((ms, a))
    screened.sort(key=lambda t: t[0])
    ref = F.linear(x, ws[0]).float()
    checked = []
    for ms, a in screened:
        y.fill_(float("nan"))
        lt.matmul(a, ws[0], x, y, workspace)
        torch.cuda.synchronize()
        err = ((y.float() - ref).abs().max() / ref.abs().max()).item()
        if err <= 1e-2:
            checked.append((ms, a, err))
        if len(checked) >= top:
            break
    graphs = {"torch": graph_of([lambda w=w: F.linear(x, w) for w in ws])}
    for i, (_, a, _) in enumerate(checked):
        graphs[f"lt{i}"] = graph_of([lambda w=w, a=a: lt.matmul(a, w, x, y, workspace) for w in ws])
    rounds = interleaved_rounds(graphs, rounds=7, replays=10)
    per = {k: v[len(v) // 2] / len(ws) for k, v in rounds.items()}
    best = min((k for k in per if k != "torch"), key=per.get, default=None)
    row = {"shape": name, "M": M, "enumerated": n_enum, "screened": len(screened), "torch_ms": per["torch"],
           "checked": [{"screen_ms": ms, "ms": per[f"lt{i}"], "err": err, "config": lt.config(a),
                        "algo": bytes(a).hex()} for i, (ms, a, err) in enumerate(checked)],
           "seconds": time.time() - t0}
    flop = 2.0 * M * ws[0].shape[0] * ws[0].shape[1]
    print(f"{name:8s} M={M:<5d} torch {per['torch'] * 1e3:8.1f} us {flop / per['torch'] / 1e9:5.0f} TF/s | best of "
          f"{len(screened)} configs ({n_enum} enumerated): {best and per[best] * 1e3 or 0:8.1f} us "
          f"{best and flop / per[best] / 1e9 or 0:5.0f} TF/s {best and row['checked'][int(best[2:])]['config']} "
          f"({row['seconds']:.0f} s)", flush=True)
    return row, per["torch"], (per[best] if best else float("nan"))


def write_table(path, rows, lib, margin):
    """Per (shape, anchor rows): the fastest checked configuration, where it beat F.linear by `margin`."""
    entries = []
    for r in rows:
        best = min(r["checked"], key=lambda c: c["ms"], default=None)
        if best is None or best["ms"] > r["torch_ms"] * (1 - margin):
            print(f"table: {r['shape']} M={r['M']}: F.linear stays ({r['torch_ms'] * 1e3:.1f} us, best "
                  f"{best and best['ms'] * 1e3 or 0:.1f})")
            continue
        N, K = SHAPES[r["shape"]]
        entries.append({"name": r["shape"], "n": N, "k": K, "m": r["M"], "dtype": "bf16", "algo": best["algo"],
                        "us": round(best["ms"] * 1e3, 1), "torch_us": round(r["torch_ms"] * 1e3, 1),
                        "config": best["config"]})
    doc = {"device": torch.cuda.get_device_name(), "cublaslt": int(lib.cublasLtGetVersion()),
           "torch": torch.__version__,
           "written_by": "python3 bench/gpu-cublaslt-algos.py --full N --write-table F (interleaved rounds against "
                         "F.linear; an entry serves exactly its row count m)",
           "entries": entries}
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"table: {len(entries)} entries -> {path}")


def check_table(path, ms, neighbours=False, reps_rounds=7):
    """Each entry of a tuning table against F.linear at every row count in --ms that the entry serves, through
    kernels/lt_gemm.py itself (interleaved rounds). With `neighbours`, row count M also runs the entry of the smallest
    tuned m >= M (which the executor would not do)."""
    table = lt_gemm.load_tables([path])[0]
    if neighbours:
        for by_m in table.entries.values():
            tuned = sorted(by_m)
            for M in ms:
                up = [m for m in tuned if m >= M]
                if up and M not in by_m:
                    by_m[M] = by_m[up[0]]
    gemm = lt_gemm.LtGemm(load_lt(), table)
    by_name = {(N, K): name for name, (N, K) in SHAPES.items()}
    out = []
    for (N, K, dtype), _ in sorted(table.entries.items()):
        copies = max(2, min(16, math.ceil(400e6 / (N * K * 2))))
        ws = [torch.randn(N, K, device="cuda", dtype=torch.bfloat16) * 0.02 for _ in range(copies)]
        for M in ms:
            if table.lookup(N, K, dtype, M) is None:
                continue
            x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
            y = gemm.linear(x, ws[0])
            if y is None:
                print(f"{by_name.get((N, K))} M={M}: refused by cublasLtMatmulAlgoCheck (F.linear serves it)")
                continue
            ref = F.linear(x, ws[0]).float()
            err = ((y.float() - ref).abs().max() / ref.abs().max()).item()
            graphs = {"torch": graph_of([lambda w=w: F.linear(x, w) for w in ws]),
                      "table": graph_of([lambda w=w: gemm.linear(x, w) for w in ws])}
            r = interleaved_rounds(graphs, rounds=reps_rounds, replays=10)
            t, b = (r[k][len(r[k]) // 2] / copies for k in ("torch", "table"))
            out.append({"shape": by_name.get((N, K)), "M": M, "torch_us": t * 1e3, "table_us": b * 1e3, "rel_err": err})
            print(f"{by_name.get((N, K)):8s} M={M:<5d} F.linear {t * 1e3:8.1f} us  "
                  f"table {b * 1e3:8.1f} us  ({(b / t - 1) * 100:+.1f}%)  rel err {err:.1e}", flush=True)
        del ws
        torch.cuda.empty_cache()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ms", default="256,128,8192")
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--algos", type=int, default=64)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--json-out", default="")
    ap.add_argument("--full", type=int, default=0, help="enumerate up to this many configurations per shape")
    ap.add_argument("--top", type=int, default=4, help="--full: configurations re-timed in interleaved rounds")
    ap.add_argument("--full-large", type=int, default=150,
                    help="--full's limit above 1,024 rows and for the LM head (slow timings)")
    ap.add_argument("--write-table", default="", help="with --full: write a kernels/lt_gemm.py tuning table")
    ap.add_argument("--margin", type=float, default=0.02, help="--write-table: keep a configuration only when it is "
                    "at least this fraction faster than F.linear in the interleaved rounds")
    ap.add_argument("--check-table", default="", help="time a tuning table's entries against F.linear at --ms rows")
    ap.add_argument("--check-neighbours", action="store_true",
                    help="--check-table: run each entry at the --ms row counts below it too")
    args = ap.parse_args()
    if args.check_table:
        res = check_table(args.check_table, [int(m) for m in args.ms.split(",")], args.check_neighbours)
        if args.json_out:
            with open(args.json_out, "w") as f:
                json.dump(res, f, indent=1)
        return
    if args.write_table and not args.full:
        ap.error("--write-table needs --full N")
    lib = load_lt()
    workspace = torch.empty(WORKSPACE, dtype=torch.uint8, device="cuda")
    print(torch.cuda.get_device_name(), torch.__version__, "cublasLt", lib.cublasLtGetVersion(), flush=True)
    rows, totals = [], {}
    for name in args.shapes.split(","):
        N, K = SHAPES[name]
        copies = max(2, min(16, math.ceil(400e6 / (N * K * 2))))
        ws = [torch.randn(N, K, device="cuda", dtype=torch.bfloat16) * 0.02 for _ in range(copies)]
        for M in (int(m) for m in args.ms.split(",")):
            if name == "lm_head" and M > 256:
                continue
            x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
            ref = F.linear(x, ws[0]).float()
            y = torch.empty(M, N, device="cuda", dtype=torch.bfloat16)
            torch_ms = graph_time([lambda w=w: F.linear(x, w) for w in ws], args.reps) if not args.full else 0
            lt = Lt(lib, M, N, K)
            if args.full:
                limit = args.full_large if M > 1024 or name == "lm_head" else args.full
                row, t_ms, b_ms = full_search(lt, name, M, ws, x, y, workspace, limit, args.top, split_k=M <= 256)
                rows.append(row)
                mult = 1 if name == "lm_head" else 32
                totals[(M, "torch")] = totals.get((M, "torch"), 0.0) + t_ms * mult
                totals[(M, "lt_full")] = totals.get((M, "lt_full"), 0.0) + b_ms * mult
                continue
            cands = []
            for rank, h in enumerate(lt.heuristics(args.algos)):
                y.fill_(float("nan"))
                try:
                    lt.matmul(h.algo, ws[0], x, y, workspace)
                    torch.cuda.synchronize()
                except RuntimeError as e:
                    cands.append({"rank": rank, "error": str(e)})
                    continue
                err = ((y.float() - ref).abs().max() / ref.abs().max()).item()
                if not err <= 1e-2:
                    cands.append({"rank": rank, "error": f"wrong: rel err {err}"})
                    continue
                ms = graph_time([lambda w=w, a=h.algo: lt.matmul(a, w, x, y, workspace) for w in ws], args.reps)
                cands.append({"rank": rank, "ms": ms, "err": err, "ws": h.workspaceSize, "waves": h.wavesCount,
                              "config": lt.config(h.algo)})
            ok = [c for c in cands if "ms" in c]
            best = min(ok, key=lambda c: c["ms"]) if ok else None
            again = torch_again = float("nan")
            if best is not None:
                h = lt.heuristics(args.algos)[best["rank"]]
                again = graph_time([lambda w=w, a=h.algo: lt.matmul(a, w, x, y, workspace) for w in ws], args.reps)
                torch_again = graph_time([lambda w=w: F.linear(x, w) for w in ws], args.reps)
            row = {"shape": name, "M": M, "N": N, "K": K, "torch_ms": torch_ms, "torch_ms_again": torch_again,
                   "first_ms": ok[0]["ms"] if ok and ok[0]["rank"] == 0 else None, "best": best,
                   "best_ms_again": again, "candidates": cands}
            rows.append(row)
            flop = 2.0 * M * N * K
            n_ok = len(ok)
            bm = best["ms"] if best else float("nan")
            print(f"{name:8s} M={M:<5d} torch {torch_ms * 1e3:8.1f}/{torch_again * 1e3:8.1f} us "
                  f"{flop / torch_ms / 1e9:5.0f} TF/s | Lt first {row['first_ms'] and row['first_ms'] * 1e3 or 0:8.1f} "
                  f"best {bm * 1e3:8.1f}/{again * 1e3:8.1f} us {flop / bm / 1e9:5.0f} TF/s "
                  f"({n_ok} of {len(cands)} candidates) {best and best['config']}", flush=True)
            mult = 1 if name == "lm_head" else 32
            for key, v in (("torch", min(torch_ms, torch_again)), ("lt_best", min(bm, again))):
                totals[(M, key)] = totals.get((M, key), 0.0) + v * mult
        del ws
        torch.cuda.empty_cache()
    print(json.dumps({f"{m} rows, {k}": round(v, 3) for (m, k), v in totals.items()}),
          "ms a step (32 layers, + LM head at decode rows)")
    if args.write_table:
        write_table(args.write_table, rows, lib, args.margin)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "rows": rows,
                       "totals": {f"{m}/{k}": v for (m, k), v in totals.items()}}, f, indent=1)


if __name__ == "__main__":
    main()
