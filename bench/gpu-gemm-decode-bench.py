# Decode-batch GEMM microbenchmark on the GPU: cuBLAS (F.linear) against Triton GEMM kernels (below) at
# M = 64, 128, 192, 256 activation rows for the Llama-3-8B layer shapes (N x K = 6144x4096 qkv, 4096x4096 o,
# 28672x4096 gate_up, 4096x14336 down) and the LM head (128256x4096), bf16. Method: each timing is a CUDA graph
# of C launches over C different weight copies (C copies > 400 MB, so L2 (50 MB) cannot serve the weights),
# replayed --reps times, median / C. Every (tile config, split) is first checked against an fp32 reference on
# fresh random inputs, with the output poisoned (NaN) before the run; every variant is also checked at ragged
# sizes (M = 200, N = 1000, bias, split over K) and for run-to-run bitwise equality. cuBLAS is timed again after
# each sweep, and the best variant re-timed, to give the run-to-run spread. Writes JSON (--json-out).
# Result on an H100 (docs/benchmarks.md, "Decode GEMMs at batch 256"): cuBLAS is faster at 192 and 256 rows on
# every shape, so the model keeps cuBLAS; these kernels live here, not in the executor.
#
# The kernels: y[M, N] = x[M, K] @ W[N, K].T (+ b), fp32 accumulation. Each program owns a BLOCK_M x BLOCK_N
# output tile and one of SPLIT_K contiguous K ranges; with SPLIT_K > 1 it writes its fp32 partial tile to a
# workspace, bumps the tile's arrival counter, and the last program to arrive sums the SPLIT_K partials in
# split order (so the result does not depend on arrival order), writes y and resets the counter to 0.
# Invariants: every y element is written once, by one program; counters are all zero between launches (a
# persistent per-device buffer, created outside CUDA-graph capture); the workspace is written before it is
# read within the same launch. SWAP computes the transposed tile (the W tile as the MMA's A operand, x as B),
# which suits small BLOCK_M. TMA variants load both operands through host-built tensor descriptors.
import argparse
import json
import math
import time

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from gpu_timing import graph_time

try:
    from triton.tools.tensor_descriptor import TensorDescriptor

    HAS_TMA = True
except Exception:  # older Triton: pointer loads only
    TensorDescriptor = None
    HAS_TMA = False

_COUNTERS = {}
_COUNTER_SLOTS = 1 << 16


def _counters(device) -> torch.Tensor:
    c = _COUNTERS.get(device)
    if c is None:
        if torch.cuda.is_current_stream_capturing():
            raise RuntimeError("gemm_decode: first split-K call inside CUDA-graph capture (warm up first)")
        c = torch.zeros(_COUNTER_SLOTS, dtype=torch.int32, device=device)
        _COUNTERS[device] = c
    return c


@triton.jit
def _epilogue(acc, y_ptr, b_ptr, ws_ptr, cnt_ptr, tile, split, SPLIT_K, offs_m, offs_n, M, N, stride_ym,
              SWAP: tl.constexpr, SPLIT: tl.constexpr, HAS_BIAS: tl.constexpr):
    # acc is [BLOCK_M, BLOCK_N] (or [BLOCK_N, BLOCK_M] with SWAP); offs_m / offs_n index its rows / columns.
    if SWAP:
        m2 = offs_m[None, :]
        n2 = offs_n[:, None]
    else:
        m2 = offs_m[:, None]
        n2 = offs_n[None, :]
    mask = (m2 < M) & (n2 < N)
    if SPLIT:
        ws = ws_ptr + m2.to(tl.int64) * N + n2
        plane = M.to(tl.int64) * N
        tl.store(ws + split * plane, acc, mask=mask)
        tl.debug_barrier()
        arrived = tl.atomic_add(cnt_ptr + tile, 1, sem="acq_rel", scope="gpu")
        if arrived == SPLIT_K - 1:
            total = tl.load(ws, mask=mask, other=0.0, cache_modifier=".cg")
            for s in range(1, SPLIT_K):
                total += tl.load(ws + s * plane, mask=mask, other=0.0, cache_modifier=".cg")
            if HAS_BIAS:
                total += tl.load(b_ptr + n2, mask=n2 < N, other=0.0).to(tl.float32)
            tl.store(y_ptr + m2 * stride_ym + n2, total.to(y_ptr.dtype.element_ty), mask=mask)
            tl.atomic_xchg(cnt_ptr + tile, 0)
    else:
        if HAS_BIAS:
            acc += tl.load(b_ptr + n2, mask=n2 < N, other=0.0).to(tl.float32)
        tl.store(y_ptr + m2 * stride_ym + n2, acc.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _tile_coords(M, N, K, SPLIT_K, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    # Program order: split fastest, then the M tiles of one weight tile (they share its bytes through L2).
    pid = tl.program_id(0)
    tiles_m = tl.cdiv(M, BLOCK_M)
    split = pid % SPLIT_K
    tile = pid // SPLIT_K
    pid_m = tile % tiles_m
    pid_n = tile // tiles_m
    k_per = tl.cdiv(tl.cdiv(K, SPLIT_K), BLOCK_K) * BLOCK_K
    k_lo = split * k_per
    k_hi = tl.minimum(K, k_lo + k_per)
    return tile, split, pid_m, pid_n, k_lo, k_hi


@triton.jit
def _gemm_kernel(x_ptr, w_ptr, y_ptr, b_ptr, ws_ptr, cnt_ptr, M, N, K, SPLIT_K, stride_xm, stride_wn, stride_ym,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, SWAP: tl.constexpr,
                 SPLIT: tl.constexpr, HAS_BIAS: tl.constexpr, EVEN_K: tl.constexpr):
    tile, split, pid_m, pid_n, k_lo, k_hi = _tile_coords(M, N, K, SPLIT_K, BLOCK_M, BLOCK_N, BLOCK_K)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    # Out-of-range rows / columns read row 0 / column 0 (valid memory) and are never stored.
    xm = tl.where(offs_m < M, offs_m, 0)
    wn = tl.where(offs_n < N, offs_n, 0)
    x_ptrs = x_ptr + xm[:, None].to(tl.int64) * stride_xm + (k_lo + offs_k)[None, :]
    w_ptrs = w_ptr + wn[:, None].to(tl.int64) * stride_wn + (k_lo + offs_k)[None, :]
    if SWAP:
        acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(k_lo, k_hi, BLOCK_K):
        if EVEN_K:
            x = tl.load(x_ptrs)
            w = tl.load(w_ptrs)
        else:
            km = (k + offs_k)[None, :] < k_hi
            x = tl.load(x_ptrs, mask=km, other=0.0)
            w = tl.load(w_ptrs, mask=km, other=0.0)
        if SWAP:
            acc = tl.dot(w, tl.trans(x), acc)
        else:
            acc = tl.dot(x, tl.trans(w), acc)
        x_ptrs += BLOCK_K
        w_ptrs += BLOCK_K
    _epilogue(acc, y_ptr, b_ptr, ws_ptr, cnt_ptr, tile, split, SPLIT_K, offs_m, offs_n, M, N, stride_ym,
              SWAP, SPLIT, HAS_BIAS)


@triton.jit
def _gemm_tma_kernel(x_desc, w_desc, y_ptr, b_ptr, ws_ptr, cnt_ptr, M, N, K, SPLIT_K, stride_ym,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, SWAP: tl.constexpr,
                     SPLIT: tl.constexpr, HAS_BIAS: tl.constexpr):
    # The descriptors zero-fill reads past M, N and K, so no masks here.
    tile, split, pid_m, pid_n, k_lo, k_hi = _tile_coords(M, N, K, SPLIT_K, BLOCK_M, BLOCK_N, BLOCK_K)
    m0 = pid_m * BLOCK_M
    n0 = pid_n * BLOCK_N
    if SWAP:
        acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(k_lo, k_hi, BLOCK_K):
        x = x_desc.load([m0, k])
        w = w_desc.load([n0, k])
        if SWAP:
            acc = tl.dot(w, x.T, acc)
        else:
            acc = tl.dot(x, w.T, acc)
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_n = n0 + tl.arange(0, BLOCK_N)
    _epilogue(acc, y_ptr, b_ptr, ws_ptr, cnt_ptr, tile, split, SPLIT_K, offs_m, offs_n, M, N, stride_ym,
              SWAP, SPLIT, HAS_BIAS)


def linear(x: torch.Tensor, w: torch.Tensor, b=None, cfg=None, out=None) -> torch.Tensor:
    """x[..., K] @ w[N, K].T (+ b), in x's dtype (into `out` [M, N] when given); cfg = (tma, swap, BLOCK_M,
    BLOCK_N, BLOCK_K, split_k, num_warps, num_stages). Weights contiguous, K a multiple of 8."""
    K = x.shape[-1]
    N = w.shape[0]
    x2 = x.reshape(-1, K)
    if x2.stride(-1) != 1 or (x2.stride(0) % 8):
        x2 = x2.contiguous()
    M = x2.shape[0]
    y = torch.empty((M, N), dtype=x.dtype, device=x.device) if out is None else out
    tma, swap, bm, bn, bk, split, warps, stages = cfg
    tiles = triton.cdiv(M, bm) * triton.cdiv(N, bn)
    if split > 1:
        if tiles > _COUNTER_SLOTS:
            raise ValueError("gemm_decode: too many output tiles for the split-K counters")
        ws = torch.empty((split, M, N), dtype=torch.float32, device=x.device)
        cnt = _counters(x.device)
    else:
        ws, cnt = y, y  # unused
    bias = b if b is not None else y
    grid = (tiles * split,)
    if tma:
        xd = TensorDescriptor.from_tensor(x2, [bm, bk])
        wd = TensorDescriptor.from_tensor(w, [bn, bk])
        _gemm_tma_kernel[grid](xd, wd, y, bias, ws, cnt, M, N, K, split, y.stride(0), BLOCK_M=bm, BLOCK_N=bn,
                               BLOCK_K=bk, SWAP=swap, SPLIT=split > 1, HAS_BIAS=b is not None,
                               num_warps=warps, num_stages=stages)
    else:
        k_per = triton.cdiv(triton.cdiv(K, split), bk) * bk
        _gemm_kernel[grid](x2, w, y, bias, ws, cnt, M, N, K, split, x2.stride(0), w.stride(0), y.stride(0),
                           BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, SWAP=swap, SPLIT=split > 1, HAS_BIAS=b is not None,
                           EVEN_K=(K % k_per == 0 and k_per % bk == 0), num_warps=warps, num_stages=stages)
    return y.reshape(*x.shape[:-1], N)


SHAPES = {"qkv": (6144, 4096), "o": (4096, 4096), "gate_up": (28672, 4096), "down": (4096, 14336),
          "lm_head": (128256, 4096)}
DT = torch.bfloat16

# (tma, swap, BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages); split-K is a run-time argument.
VARIANTS = [
    (False, False, 256, 128, 64, 8, 3),
    (False, False, 128, 128, 64, 4, 4),
    (False, False, 128, 256, 64, 8, 3),
    (False, False, 64, 128, 64, 4, 4),
    (False, False, 256, 64, 64, 4, 4),
    (False, True, 256, 128, 64, 8, 3),
    (False, True, 128, 128, 64, 4, 4),
    (False, True, 64, 128, 128, 4, 4),
    (True, False, 256, 128, 64, 8, 3),
    (True, False, 256, 128, 64, 8, 4),
    (True, False, 128, 128, 64, 4, 4),
    (True, False, 128, 256, 64, 8, 3),
    (True, False, 64, 128, 64, 4, 4),
    (True, False, 256, 64, 64, 4, 4),
    (True, True, 256, 128, 64, 8, 3),
    (True, True, 128, 128, 64, 4, 4),
]




def rel_err(a, ref):
    return ((a.float() - ref).norm() / ref.norm()).item()


def splits_for(M, N, K, v, sms):
    bm, bn, bk = v[2], v[3], v[4]
    tiles = math.ceil(M / bm) * math.ceil(N / bn)
    out = [1]
    for s in (2, 3, 4, 6, 7, 8):  # only splits into whole BLOCK_K multiples (one compiled variant)
        if tiles * s <= 2.2 * sms and K // s >= 512 and K % (s * bk) == 0:
            out.append(s)
    return out


def applies(M, v):
    bm = v[2]
    p2 = 1 << max(6, (M - 1).bit_length())
    return bm <= p2


def cfg_of(v, split):
    tma, swap, bm, bn, bk, warps, stages = v
    return (tma, swap, bm, bn, bk, split, warps, stages)


def check_variants(res, gen):
    """Every variant (and a split) on fresh inputs at ragged sizes, output poisoned; bitwise repeatability."""
    bad = 0
    for v in VARIANTS:
        for M, N, K, split in ((200, 1000, 2048, 2), (256, 640, 4096, 4), (64, 6144, 4096, 1)):
            x = torch.randn((M, K), generator=gen, device="cuda").to(DT)
            w = (torch.randn((N, K), generator=gen, device="cuda") * 0.02).to(DT)
            b = torch.randn((N,), generator=gen, device="cuda").to(DT) if K == 2048 else None
            ref = x.float() @ w.float().T + (b.float() if b is not None else 0)
            out = torch.full((M, N), float("nan"), dtype=DT, device="cuda")
            row = {"variant": v, "M": M, "N": N, "K": K, "split": split}
            try:
                linear(x, w, b, cfg=cfg_of(v, split), out=out)
                again = linear(x, w, b, cfg=cfg_of(v, split))
                torch.cuda.synchronize()
                row["err"] = rel_err(out, ref)
                row["nan"] = bool(torch.isnan(out).any())
                row["repeatable"] = bool(torch.equal(out, again))
                ok = row["err"] < 1e-2 and not row["nan"] and row["repeatable"]
            except Exception as e:  # a config the compiler refuses (shared memory, registers)
                row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
                ok = False
            row["ok"] = ok
            res["checks"].append(row)
            if not ok:
                bad += 1
                print("CHECK FAIL", row, flush=True)
    print(f"variant checks: {len(res['checks']) - bad} ok, {bad} failed", flush=True)
    return {tuple(r["variant"]) for r in res["checks"] if not r["ok"]}


def sweep(res, Ms, reps, broken, gen):
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    for name, (N, K) in SHAPES.items():
        size = N * K * 2
        C = max(2, min(16, math.ceil(400e6 / size)))
        ws = [(torch.randn((N, K), generator=gen, device="cuda") * 0.02).to(DT) for _ in range(C)]
        for M in Ms:
            t0 = time.time()
            x = torch.randn((M, K), generator=gen, device="cuda").to(DT)
            ref = x.float() @ ws[0].float().T
            flop = 2.0 * M * N * K
            row = {"shape": name, "N": N, "K": K, "M": M, "bytes": size, "copies": C}
            ms = graph_time([lambda w=w: F.linear(x, w) for w in ws], reps)
            row["cublas_ms"] = ms
            row["cublas_err"] = rel_err(F.linear(x, ws[0]), ref)
            row["variants"] = []
            best = None
            for v in VARIANTS:
                if v in broken or not applies(M, v):
                    continue
                for split in splits_for(M, N, K, v, sms):
                    cfg = cfg_of(v, split)
                    out = torch.full((M, N), float("nan"), dtype=DT, device="cuda")
                    try:
                        linear(x, ws[0], cfg=cfg, out=out)
                        torch.cuda.synchronize()
                        err = rel_err(out, ref)
                        if math.isnan(err) or err > 1e-2:
                            row["variants"].append({"cfg": cfg, "err": err, "error": "wrong"})
                            continue
                        ms = graph_time([lambda w=w: linear(x, w, cfg=cfg) for w in ws], reps)
                    except Exception as e:
                        row["variants"].append({"cfg": cfg, "error": f"{type(e).__name__}: {str(e)[:200]}"})
                        continue
                    r = {"cfg": cfg, "ms": ms, "err": err}
                    row["variants"].append(r)
                    if best is None or ms < best["ms"]:
                        best = r
            row["best"] = best
            if best is not None:
                cfg = best["cfg"]
                row["best_ms_again"] = graph_time([lambda w=w: linear(x, w, cfg=cfg) for w in ws], reps)
            row["cublas_ms_again"] = graph_time([lambda w=w: F.linear(x, w) for w in ws], reps)
            res["gemm"].append(row)
            b = best or {"cfg": None, "ms": float("nan"), "err": float("nan")}
            print(f"{name:8s} M={M:<3d} cuBLAS {row['cublas_ms'] * 1e3:7.1f}/{row['cublas_ms_again'] * 1e3:7.1f} us "
                  f"{flop / row['cublas_ms'] / 1e9:5.0f} TF/s {size / row['cublas_ms'] / 1e9:4.2f} TB/s | triton "
                  f"{b['ms'] * 1e3:7.1f}/{row.get('best_ms_again', float('nan')) * 1e3:7.1f} us "
                  f"{flop / b['ms'] / 1e9:5.0f} TF/s err {b['err']:.1e} {b['cfg']} ({time.time() - t0:.1f}s)", flush=True)
        del ws
        torch.cuda.empty_cache()


def ceilings(res):
    n = 8192
    a = torch.randn((n, n), device="cuda").to(DT)
    b = torch.randn((n, n), device="cuda").to(DT)
    ms = graph_time([lambda: a @ b] * 4, 10)
    res["cublas_8192_TFLOPs"] = 2 * n**3 / ms / 1e9
    x = torch.randn(1 << 30, device="cuda", dtype=DT)
    y = torch.empty_like(x)
    ms = graph_time([lambda: y.copy_(x)] * 4, 10)
    res["copy_TBps"] = 2 * x.numel() * 2 / ms / 1e9
    del a, b, x, y
    torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ms", default="64,128,192,256")
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--variants", default="", help="indexes into VARIANTS (default: all)")
    ap.add_argument("--json-out", default="")
    args = ap.parse_args()
    if args.variants:
        VARIANTS[:] = [VARIANTS[int(i)] for i in args.variants.split(",")]
    for k in list(SHAPES):
        if k not in args.shapes.split(","):
            del SHAPES[k]
    res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
           "tma": HAS_TMA, "checks": [], "gemm": []}
    print(res["device"], res["torch"], "triton", res["triton"], "tma", res["tma"], flush=True)
    ceilings(res)
    print(f"cuBLAS 8192^3: {res['cublas_8192_TFLOPs']:.0f} TFLOP/s; copy {res['copy_TBps']:.2f} TB/s", flush=True)
    gen = torch.Generator(device="cuda").manual_seed(0)
    t = time.time()
    broken = check_variants(res, gen)
    res["check_seconds"] = time.time() - t

    def dump():
        if args.json_out:
            with open(args.json_out, "w") as f:
                json.dump(res, f, indent=1)

    dump()
    try:
        sweep(res, [int(m) for m in args.ms.split(",")], args.reps, broken, gen)
    finally:
        dump()
    print("\n| shape | M | cuBLAS us (again) | TFLOP/s | weight TB/s | best Triton us (again) | TFLOP/s | TB/s | "
          "Triton/cuBLAS | config (tma, swap, BM, BN, BK, split, warps, stages) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in res["gemm"]:
        flop = 2.0 * r["M"] * r["N"] * r["K"]
        b = r["best"]
        if b is None:
            continue
        print(f"| {r['shape']} | {r['M']} | {r['cublas_ms'] * 1e3:.1f} ({r['cublas_ms_again'] * 1e3:.1f}) | "
              f"{flop / r['cublas_ms'] / 1e9:.0f} | {r['bytes'] / r['cublas_ms'] / 1e9:.2f} | "
              f"{b['ms'] * 1e3:.1f} ({r['best_ms_again'] * 1e3:.1f}) | {flop / b['ms'] / 1e9:.0f} | "
              f"{r['bytes'] / b['ms'] / 1e9:.2f} | {b['ms'] / r['cublas_ms']:.3f} | {tuple(b['cfg'])} |")


if __name__ == "__main__":
    main()
