# Small-batch GEMV microbenchmark on the GPU: for the Llama-3-8B layer shapes (N x K = 6144x4096 qkv,
# 4096x4096 o, 28672x4096 gate_up, 4096x14336 down) and the LM head (128256x4096) at M = 1, 2, 4, 8, 16 rows,
# cuBLAS (F.linear) against the Triton kernel of python/lmi_executor/kernels/gemv.py over a sweep of tile
# configurations, plus the fused layer stages (norm prologue, residual / SiLU epilogues) against the unfused
# sequence they replace, and two bandwidth ceilings (device-to-device copy, a pure-read Triton kernel).
# Method: every timing is a CUDA graph of C launches over C different weight copies (C copies > 400 MB, so
# L2 (50 MB) cannot serve them), replayed 15 times, median / C. Correctness of every config is checked
# against an fp32 reference on fresh random inputs. Writes JSON (--json-out) and prints tables.
import argparse
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))

from lmi_executor.kernels import fused, gemv  # noqa: E402
from gpu_timing import graph_time  # noqa: E402

SHAPES = {"qkv": (6144, 4096), "o": (4096, 4096), "gate_up": (28672, 4096), "down": (4096, 14336),
          "lm_head": (128256, 4096)}
DT = torch.bfloat16


@triton.jit
def _read_kernel(x_ptr, out_ptr, n_per, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    base = x_ptr + pid.to(tl.int64) * n_per
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for i in range(0, n_per, BLOCK):
        acc += tl.load(base + i + tl.arange(0, BLOCK)).to(tl.float32)
    tl.store(out_ptr + pid, tl.sum(acc, 0))


def ceilings(res):
    n = 1 << 30  # 2 GiB of bf16
    x = torch.randn(n, device="cuda", dtype=DT)
    y = torch.empty_like(x)
    ms = graph_time([lambda: y.copy_(x)] * 4)
    res["copy_TBps"] = 2 * x.numel() * 2 / ms / 1e9
    ms = graph_time([lambda: x.sum()] * 4)
    res["torch_sum_TBps"] = x.numel() * 2 / ms / 1e9
    best = 0.0
    for progs in (264, 528, 1056, 2112):
        for block, warps in ((2048, 4), (4096, 8), (8192, 8)):
            out = torch.empty(progs, device="cuda", dtype=torch.float32)
            n_per = n // progs // block * block

            def f(progs=progs, block=block, warps=warps, n_per=n_per, out=out):
                _read_kernel[(progs,)](x, out, n_per, BLOCK=block, num_warps=warps)

            ms = graph_time([f] * 4)
            tbps = progs * n_per * 2 / ms / 1e9
            res.setdefault("read_sweep", []).append({"programs": progs, "block": block, "warps": warps, "TBps": tbps})
            best = max(best, tbps)
    res["read_TBps"] = best
    del x, y


def configs(M):
    out = []
    if M == 1:
        for bn, bk in ((4, 1024), (8, 512), (16, 256), (16, 512), (32, 256)):
            for warps, stages in ((4, 1), (4, 3), (8, 2)):
                out.append((False, bn, bk, warps, stages))
    for bn in (16, 32, 64):
        for bk in (128, 256, 512):
            for warps, stages in ((4, 3), (8, 3)):
                out.append((True, bn, bk, warps, stages))
    return out


def rel_err(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def sweep(res, Ms, quick):
    gen = torch.Generator(device="cuda").manual_seed(0)
    for name, (N, K) in SHAPES.items():
        size = N * K * 2
        C = max(2, min(16, math.ceil(400e6 / size)))
        ws = [(torch.randn((N, K), generator=gen, device="cuda") * 0.02).to(DT) for _ in range(C)]
        for M in Ms:
            x = torch.randn((M, K), generator=gen, device="cuda").to(DT)
            ref = (x.double() @ ws[0].double().T)
            row = {"shape": name, "N": N, "K": K, "M": M, "bytes": size}
            ms = graph_time([lambda w=w: F.linear(x, w) for w in ws])
            row["cublas_ms"] = ms
            row["cublas_TBps"] = size / ms / 1e9
            row["cublas_err"] = rel_err(F.linear(x, ws[0]), ref)
            best = None
            cfgs = configs(M) if not quick else [gemv.config(M, N, K)]
            row["variants"] = []
            for cfg in cfgs:
                if M > (16 if cfg[0] else 1):
                    continue
                try:
                    y = gemv.gemv(x, ws[0], cfg=cfg)
                    err = rel_err(y, ref)
                    ms = graph_time([lambda w=w: gemv.gemv(x, w, cfg=cfg) for w in ws])
                except Exception as e:  # a config the compiler refuses (shared memory, registers)
                    row["variants"].append({"cfg": cfg, "error": str(e)[:200]})
                    continue
                v = {"cfg": cfg, "ms": ms, "TBps": size / ms / 1e9, "err": err}
                row["variants"].append(v)
                if err < 1e-2 and (best is None or ms < best["ms"]):
                    best = v
            row["best"] = best
            res["gemv"].append(row)
            b = best or {"cfg": None, "ms": float("nan"), "TBps": float("nan"), "err": float("nan")}
            print(f"{name:8s} M={M:<2d} cuBLAS {row['cublas_ms'] * 1e3:8.1f} us {row['cublas_TBps']:5.2f} TB/s | "
                  f"triton {b['ms'] * 1e3:8.1f} us {b['TBps']:5.2f} TB/s err {b['err']:.1e} {b['cfg']}", flush=True)
        del ws


def fused_stages(res, Ms):
    """Each fused kernel against the unfused sequence it replaces (Triton norm / silu + cuBLAS), as the model
    uses them: the norm prologues read the partial sums of squares the residual epilogue left."""
    gen = torch.Generator(device="cuda").manual_seed(1)
    H, I, V = 4096, 14336, 128256
    eps = 1e-5
    for M in Ms:
        C = 4
        wqkv = [(torch.randn((6144, H), generator=gen, device="cuda") * 0.02).to(DT) for _ in range(C * 2)]
        wgu = [(torch.randn((2 * I, H), generator=gen, device="cuda") * 0.02).to(DT) for _ in range(C)]
        wd = [(torch.randn((H, I), generator=gen, device="cuda") * 0.02).to(DT) for _ in range(C)]
        wo = [(torch.randn((H, H), generator=gen, device="cuda") * 0.02).to(DT) for _ in range(C * 2)]
        nw = (1 + 0.1 * torch.randn(H, generator=gen, device="cuda")).to(DT)
        x0 = torch.randn((M, H), generator=gen, device="cuda").to(DT)
        r = torch.randn((M, H), generator=gen, device="cuda").to(DT)
        a = torch.randn((M, I), generator=gen, device="cuda").to(DT)
        x, parts = gemv.gemv(x0, wo[0], residual=r, want_ssq=True)  # a residual stream with its partials
        rows = {}

        def cmp(label, unfused, fused_fn, ref_out, nbytes):
            u_ms = graph_time(unfused)
            f_ms = graph_time(fused_fn)
            rows[label] = {"unfused_ms": u_ms, "fused_ms": f_ms, "TBps_fused": nbytes / f_ms / 1e9,
                           "err": rel_err(ref_out[1](), ref_out[0]())}
            print(f"  M={M} {label:36s} unfused {u_ms * 1e3:7.1f} us  fused {f_ms * 1e3:7.1f} us  "
                  f"({nbytes / f_ms / 1e9:4.2f} TB/s) err {rows[label]['err']:.1e}", flush=True)

        def norm_qkv_unfused(w):
            return F.linear(fused.add_rms_norm(x, None, nw, eps), w)

        cmp("norm(ssq)+qkv", [lambda w=w: norm_qkv_unfused(w) for w in wqkv],
            [lambda w=w: gemv.gemv(x, w, norm_w=nw, eps=eps, ssq=parts) for w in wqkv],
            (lambda: norm_qkv_unfused(wqkv[0]), lambda: gemv.gemv(x, wqkv[0], norm_w=nw, eps=eps, ssq=parts)),
            6144 * H * 2)
        cmp("norm(recomputed)+qkv", [lambda w=w: norm_qkv_unfused(w) for w in wqkv],
            [lambda w=w: gemv.gemv(x, w, norm_w=nw, eps=eps) for w in wqkv],
            (lambda: norm_qkv_unfused(wqkv[0]), lambda: gemv.gemv(x, wqkv[0], norm_w=nw, eps=eps)), 6144 * H * 2)
        cmp("plain qkv (no norm)", [lambda w=w: F.linear(x, w) for w in wqkv],
            [lambda w=w: gemv.gemv(x, w) for w in wqkv],
            (lambda: F.linear(x, wqkv[0]), lambda: gemv.gemv(x, wqkv[0])), 6144 * H * 2)

        def o_unfused(w, rr):
            fused.add_rms_norm(F.linear(x0, w), rr, nw, eps)  # residual += o (the norm moves to gate_up's prologue)
            return rr

        scratch = r.clone()
        cmp("o+residual+ssq", [lambda w=w: o_unfused(w, scratch) for w in wo],
            [lambda w=w: gemv.gemv(x0, w, residual=r, want_ssq=True) for w in wo],
            (lambda: o_unfused(wo[0], r.clone()), lambda: gemv.gemv(x0, wo[0], residual=r)), H * H * 2)

        def gu_unfused(w):
            return fused.silu_and_mul(F.linear(fused.add_rms_norm(x, None, nw, eps), w))

        silu_cfgs = ([(False, 2, 1024, 8, 2), (False, 4, 512, 4, 3), (False, 4, 1024, 8, 2), (False, 8, 512, 4, 3)]
                     if M == 1 else [(True, 16, 512, 4, 3), (True, 16, 256, 4, 3), (True, 32, 256, 4, 3),
                                     (True, 32, 128, 4, 3)])
        for cfg in silu_cfgs:
            cmp(f"norm(ssq)+gate_up+silu {cfg[1:]}", [lambda w=w: gu_unfused(w) for w in wgu],
                [lambda w=w: gemv.gemv(x, w, norm_w=nw, eps=eps, ssq=parts, silu_up=I, cfg=cfg) for w in wgu],
                (lambda: gu_unfused(wgu[0]), lambda: gemv.gemv(x, wgu[0], norm_w=nw, eps=eps, ssq=parts, silu_up=I,
                                                              cfg=cfg)), 2 * I * H * 2)
        cmp("down+residual+ssq", [lambda w=w: F.linear(a, w) for w in wd],
            [lambda w=w: gemv.gemv(a, w, residual=r, want_ssq=True) for w in wd],
            (lambda: F.linear(a, wd[0]) + r, lambda: gemv.gemv(a, wd[0], residual=r)), H * I * 2)
        del wqkv, wgu, wd, wo
        lm = [(torch.randn((V, H), generator=gen, device="cuda") * 0.02).to(DT) for _ in range(2)]
        idx = torch.arange(M, device="cuda")

        def lm_unfused(w):
            return F.linear(fused.add_rms_norm(x[idx], None, nw, eps), w).float()

        cmp("norm(ssq)+lm_head(fp32 out)", [lambda w=w: lm_unfused(w) for w in lm],
            [lambda w=w: gemv.gemv(x, w, norm_w=nw, eps=eps, ssq=parts, rows=idx, out_f32=True) for w in lm],
            (lambda: lm_unfused(lm[0]),
             lambda: gemv.gemv(x, lm[0], norm_w=nw, eps=eps, ssq=parts, rows=idx, out_f32=True)), V * H * 2)
        del lm
        res["fused"][str(M)] = rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ms", default="1,2,4,8,16")
    ap.add_argument("--quick", action="store_true", help="only the configs gemv.py uses")
    ap.add_argument("--json-out", default="")
    args = ap.parse_args()
    Ms = [int(m) for m in args.ms.split(",")]
    res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
           "gemv": [], "fused": {}}
    ceilings(res)
    print(f"copy {res['copy_TBps']:.3f} TB/s (read+write), read kernel {res['read_TBps']:.3f} TB/s, "
          f"torch sum {res['torch_sum_TBps']:.3f} TB/s", flush=True)
    sweep(res, Ms, args.quick)
    fused_stages(res, [m for m in Ms if m <= gemv.MAX_ROWS])
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(res, f, indent=1)
    print("\n| shape | M | cuBLAS us | cuBLAS TB/s | Triton us | Triton TB/s | config |\n|---|---|---|---|---|---|---|")
    for r in res["gemv"]:
        b = r["best"] or {}
        print(f"| {r['shape']} | {r['M']} | {r['cublas_ms'] * 1e3:.1f} | {r['cublas_TBps']:.2f} | "
              f"{b.get('ms', float('nan')) * 1e3:.1f} | {b.get('TBps', float('nan')):.2f} | {b.get('cfg')} |")


if __name__ == "__main__":
    main()
