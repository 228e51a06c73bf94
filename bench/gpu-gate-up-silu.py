# The MLP's gate/up GEMM with SiLU-and-mul in its epilogue, a scratch Gluon kernel (below), against what prompt steps
# run: quant.linear (cuBLASLt where the H100 table covers the row count, else F.linear) then
# kernels/fused.silu_and_mul. Llama-3-8B shape (K 4,096, I 14,336), bf16. Not wired into the executor: it lost
# (docs/benchmarks.md, seventeenth session); kept here for a later attempt (e.g. with TMA multicast).
# 1. Correctness: both paths against an fp32 reference (relative error over the whole output), at the timed row
#    counts and at ragged shapes (rows and K not multiples of the tiles).
# 2. Short timings: CUDA graphs of one call each, interleaved rounds (gpu_timing.interleaved_rounds), median ms.
# 3. Sustained timings (--secs > 0): each candidate replayed alone for --secs at the card's power limit
#    (gpu-gemm-sustained.py's method), --rounds rounds with the order rotating: ms, SM MHz, W (medians).
# Launch names: s<stages>g<group_m>[w<warps>][e<probe>]: e2 = main loop only (stores the gate half, wrong result).
#   python3 bench/gpu-gate-up-silu.py [--rows 8192,2048] [--launches s4g8,s3g8,s4g8e2] [--secs 0.5]
#
# The kernel: a persistent Gluon kernel (TMA loads, wgmma, mbarriers), one program per SM walking its output tiles
# (pid, pid + programs, ...) GROUP_M row blocks at a time. Per tile BLOCK_M rows x BLOCK_N outputs with one
# [BLOCK_M, 2 * BLOCK_N] accumulator (gate columns, then up: the widest wgmma per K step); per K step one TMA load
# of the activation tile and of the gate and up weight tiles (rows n and I + n of W) into a STAGES-deep ring, the
# load STAGES - 1 steps ahead issued once the MMA that read its slot has retired (loads run ahead across tiles).
# The epilogue rounds gate and up to bf16 where the unfused path does (the GEMM's output), then SiLU and the
# product in fp32 like kernels/fused.silu_and_mul, and stores with TMA.
import argparse
import importlib.util
import json
import os
import statistics
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, HERE)
from gpu_timing import graph_of, interleaved_rounds  # noqa: E402
from lmi_executor.kernels import fused  # noqa: E402
from lmi_executor.quant import linear  # noqa: E402

_spec = importlib.util.spec_from_file_location("sustained", os.path.join(HERE, "gpu-gemm-sustained.py"))
_sus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_sus)

try:
    import triton
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.hopper import (
        fence_async_shared,
        mbarrier,
        tma,
        warpgroup_mma,
        warpgroup_mma_wait,
    )
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    _tma_load = getattr(tma, "async_load", None) or tma.async_copy_global_to_shared
    _tma_store = getattr(tma, "async_store", None) or tma.async_copy_shared_to_global
    IMPORT_ERROR = None
except Exception as e:  # noqa: BLE001 - no Triton, or one without Gluon's Hopper API
    IMPORT_ERROR = e

BLOCK_M, BLOCK_N, BLOCK_K = 128, 128, 64
DEFAULTS = {"stages": 4, "group_m": 8, "num_warps": 8}

if IMPORT_ERROR is None:

    @gluon.jit
    def _tile(t, num_pid_m, num_pid_n, GROUP_M: gl.constexpr):
        """(row block, column block) of the t-th output tile: GROUP_M row blocks at a time, rows fastest."""
        in_group = GROUP_M * num_pid_n
        first_m = (t // in_group) * GROUP_M
        size_m = min(num_pid_m - first_m, GROUP_M)
        return first_m + (t % in_group) % size_m, (t % in_group) // size_m

    @gluon.jit
    def _load(p, total, lm, ln, lk, inter, x_desc, w_desc, x_bufs, w_bufs, bars, STAGES: gl.constexpr):
        """Issues the TMA loads of flattened step p (output tile (lm, ln), K step lk) into ring slot p % STAGES: the
        activation tile and the gate and up weight tiles side by side (gate rows first); nothing once p is past the
        program's last step."""
        BM: gl.constexpr = x_desc.block_type.shape[0]
        BK: gl.constexpr = x_desc.block_type.shape[1]
        BN: gl.constexpr = w_desc.block_type.shape[0]
        pred = p < total
        s = p % STAGES
        bar = bars.index(s)
        mbarrier.expect(bar, x_desc.block_type.nbytes + 2 * w_desc.block_type.nbytes, pred=pred)
        _tma_load(x_desc, [lm * BM, lk * BK], bar, x_bufs.index(s), pred)
        _tma_load(w_desc, [ln * BN, lk * BK], bar, w_bufs.index(s).slice(0, BN), pred)
        _tma_load(w_desc, [inter + ln * BN, lk * BK], bar, w_bufs.index(s).slice(BN, BN), pred)

    @gluon.jit
    def _next(lk, lt, lm, ln, k_iters, pid, nprog, num_pid_m, num_pid_n, GROUP_M: gl.constexpr):
        """The step after (tile lt = (lm, ln), K step lk): tile coordinates are recomputed once per tile only, so
        the loop's issue path stays a few instructions long."""
        lk += 1
        if lk == k_iters:
            lk = 0
            lt += 1
            lm, ln = _tile(pid + lt * nprog, num_pid_m, num_pid_n, GROUP_M)
        return lk, lt, lm, ln

    @gluon.jit
    def _gate_up_silu_kernel(x_desc, w_desc, y_desc, M, inter, K, STAGES: gl.constexpr, GROUP_M: gl.constexpr,
                             num_warps: gl.constexpr, EPI: gl.constexpr = 0):
        BM: gl.constexpr = x_desc.block_type.shape[0]
        BK: gl.constexpr = x_desc.block_type.shape[1]
        BN: gl.constexpr = w_desc.block_type.shape[0]
        dtype: gl.constexpr = x_desc.dtype
        x_bufs = gl.allocate_shared_memory(dtype, [STAGES, BM, BK], x_desc.layout)
        w_bufs = gl.allocate_shared_memory(dtype, [STAGES, 2 * BN, BK], w_desc.layout)
        y_smem = gl.allocate_shared_memory(dtype, [BM, BN], y_desc.layout)
        bars = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        for i in gl.static_range(STAGES):
            mbarrier.init(bars.index(i), count=1)
        # One [BM, 2 * BN] accumulator (gate columns, then up): each warp 16 rows, the widest wgmma per K step.
        acc_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[num_warps, 1],
                                                             instr_shape=[16, 2 * BN, 16])
        num_pid_m = gl.cdiv(M, BM)
        num_pid_n = inter // BN
        pid = gl.program_id(0)
        nprog = gl.num_programs(0)
        k_iters = gl.cdiv(K, BK)
        total = (num_pid_m * num_pid_n - pid + nprog - 1) // nprog * k_iters

        # Producer: the next load's step; it runs STAGES - 1 steps ahead of the MMAs, across tile boundaries.
        lk = 0
        lt = 0
        lm, ln = _tile(pid, num_pid_m, num_pid_n, GROUP_M)
        for p in gl.static_range(STAGES - 1):
            _load(p, total, lm, ln, lk, inter, x_desc, w_desc, x_bufs, w_bufs, bars, STAGES)
            lk, lt, lm, ln = _next(lk, lt, lm, ln, k_iters, pid, nprog, num_pid_m, num_pid_n, GROUP_M)
        # Consumer: its tile and K step.
        ck = 0
        ct = 0
        cm, cn = _tile(pid, num_pid_m, num_pid_n, GROUP_M)
        acc = gl.zeros([BM, 2 * BN], gl.float32, acc_layout)
        for c in range(total):
            s = c % STAGES
            mbarrier.wait(bars.index(s), (c // STAGES) & 1)
            acc = warpgroup_mma(x_bufs.index(s), w_bufs.index(s).permute((1, 0)), acc, use_acc=ck != 0,
                                is_async=True)
            # The MMA of step c - 1 has retired: its slot takes step c + STAGES - 1.
            acc = warpgroup_mma_wait(num_outstanding=1, deps=(acc, ))
            _load(c + STAGES - 1, total, lm, ln, lk, inter, x_desc, w_desc, x_bufs, w_bufs, bars, STAGES)
            lk, lt, lm, ln = _next(lk, lt, lm, ln, k_iters, pid, nprog, num_pid_m, num_pid_n, GROUP_M)
            if ck == k_iters - 1:
                acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc, ))
                if EPI == 2:  # timing probe: the gate half only, no SiLU (wrong result)
                    y, _ = gl.split(gl.permute(gl.reshape(acc.to(dtype), [BM, 2, BN]), (0, 2, 1)))
                else:
                    # Gate and up rounded where the unfused path rounds them (the GEMM's output), then SiLU and
                    # the product in fp32 like kernels/fused.silu_and_mul.
                    both = acc.to(dtype).to(gl.float32)
                    g, u = gl.split(gl.permute(gl.reshape(both, [BM, 2, BN]), (0, 2, 1)))
                    a = (g / (1.0 + gl.exp(-g))).to(dtype).to(gl.float32)
                    y = (a * u).to(dtype)
                tma.store_wait(pendings=0)  # the previous tile's store has read y_smem
                y_smem.store(y)
                fence_async_shared()
                _tma_store(y_desc, [cm * BM, cn * BN], y_smem)
            ck, ct, cm, cn = _next(ck, ct, cm, cn, k_iters, pid, nprog, num_pid_m, num_pid_n, GROUP_M)
        tma.store_wait(pendings=0)
        for i in gl.static_range(STAGES):
            mbarrier.invalidate(bars.index(i))


_NUM_SMS = {}


def gate_up_silu(x: torch.Tensor, w: torch.Tensor, launch: dict = None) -> torch.Tensor:
    """silu(x @ W[:I].T) * (x @ W[I:].T) for W = [gate; up] of shape [2I, K] (contiguous bf16/fp16 on sm90, I a
    multiple of BLOCK_N, K of 8)."""
    M, K = x.shape
    inter = w.shape[0] // 2
    cfg = dict(DEFAULTS, **(launch or {}))
    y = torch.empty((M, inter), dtype=x.dtype, device=x.device)
    if M == 0:
        return y
    gdt = gl.bfloat16 if x.dtype == torch.bfloat16 else gl.float16
    x_desc = TensorDescriptor.from_tensor(x, [BLOCK_M, BLOCK_K],
                                          gl.NVMMASharedLayout.get_default_for([BLOCK_M, BLOCK_K], gdt))
    w_desc = TensorDescriptor.from_tensor(w, [BLOCK_N, BLOCK_K],
                                          gl.NVMMASharedLayout.get_default_for([BLOCK_N, BLOCK_K], gdt))
    y_desc = TensorDescriptor.from_tensor(y, [BLOCK_M, BLOCK_N],
                                          gl.NVMMASharedLayout.get_default_for([BLOCK_M, BLOCK_N], gdt))
    dev = x.device.index if x.device.index is not None else torch.cuda.current_device()
    if dev not in _NUM_SMS:
        _NUM_SMS[dev] = torch.cuda.get_device_properties(dev).multi_processor_count
    tiles = triton.cdiv(M, BLOCK_M) * (inter // BLOCK_N)
    grid = (min(_NUM_SMS[dev], tiles),)
    extra = {"EPI": cfg["epi"]} if cfg.get("epi") else {}
    _gate_up_silu_kernel[grid](x_desc, w_desc, y_desc, M, inter, K, STAGES=cfg["stages"], GROUP_M=cfg["group_m"],
                               num_warps=cfg["num_warps"], **extra)
    return y



def parse_launch(s):
    """'s3g8w8e2' -> {'stages': 3, 'group_m': 8, 'num_warps': 8, 'epi': 2} (w, e optional)."""
    out, key = {}, None
    names = {"s": "stages", "g": "group_m", "w": "num_warps", "e": "epi"}
    num = ""
    for ch in s + "$":
        if ch.isdigit():
            num += ch
            continue
        if key:
            out[names[key]] = int(num)
        key, num = (ch if ch in names else None), ""
    return out


def rel_err(y, ref):
    return ((y.float() - ref).norm() / ref.norm()).item()


def reference(x, w):
    inter = w.shape[0] // 2
    g = x.float() @ w[:inter].float().T
    u = x.float() @ w[inter:].float().T
    return g * torch.sigmoid(g) * u


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="8192,4096,2048,1024,512")
    ap.add_argument("--launches", default="s3g8,s4g8,s3g16,s3g4")
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--inter", type=int, default=14336)
    ap.add_argument("--secs", type=float, default=0.5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sustained-rows", default="8192")
    ap.add_argument("--json-out", default="")
    args = ap.parse_args()
    torch.manual_seed(0)
    dev = torch.device("cuda")
    dt = torch.bfloat16
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, gluon import: {IMPORT_ERROR!r}")
    res = {"device": torch.cuda.get_device_name(), "checks": [], "short": {}, "sustained": {}}

    # Ragged shapes first: a wrong result here stops the run before any timing; a launch that does not compile
    # (e.g. more shared memory than the SM has) is dropped with its error.
    launches = args.launches.split(",")
    for M, K, inter in ((300, 4096, 14336), (77, 520, 256), (1, 64, 128), (129, 4096, 384)):
        x = torch.randn(M, K, device=dev, dtype=dt)
        w = torch.randn(2 * inter, K, device=dev, dtype=dt) / K**0.5
        ref = reference(x, w)
        e_ref = rel_err(fused.silu_and_mul(F.linear(x, w)), ref)
        for name in list(launches):
            try:
                y = gate_up_silu(x, w, parse_launch(name))
            except Exception as e:  # noqa: BLE001
                print(f"launch {name} dropped: {type(e).__name__}: {str(e)[:300]}")
                launches.remove(name)
                continue
            torch.cuda.synchronize()
            e = rel_err(y, ref)
            res["checks"].append({"M": M, "K": K, "inter": inter, "launch": name, "fused": e, "unfused": e_ref})
            print(f"check M={M} K={K} I={inter} {name}: rel err fused {e:.2e}, unfused {e_ref:.2e}")
            if "e" not in name and (not (e < 2 * e_ref + 1e-3) or torch.isnan(y).any()):  # e1/e2: timing probes
                raise SystemExit(f"fused output wrong at M={M} K={K} I={inter} {name}")

    K, inter = args.hidden, args.inter
    w = torch.randn(2 * inter, K, device=dev, dtype=dt) / K**0.5
    sustained_rows = {int(r) for r in args.sustained_rows.split(",") if r}
    for M in (int(r) for r in args.rows.split(",")):
        x = torch.randn(M, K, device=dev, dtype=dt)
        ref = reference(x, w)
        cands = {"unfused": lambda x=x: fused.silu_and_mul(linear(x, w))}
        for name in launches:
            cands[name] = lambda x=x, launch=parse_launch(name): gate_up_silu(x, w, launch)
        for name, fn in cands.items():
            e = rel_err(fn(), ref)
            print(f"M={M} {name}: rel err {e:.2e}")
            res["checks"].append({"M": M, "K": K, "inter": inter, "launch": name, "err": e})
        del ref
        graphs = {name: graph_of([fn]) for name, fn in cands.items()}
        rounds = interleaved_rounds(graphs, rounds=7, replays=10 if M >= 4096 else 30)
        flops = 2 * M * K * 2 * inter
        line = {name: statistics.median(xs) for name, xs in rounds.items()}
        res["short"][M] = line
        print(f"M={M} short (ms, TFLOP/s): " + ", ".join(
            f"{n} {ms:.4f} ({flops / ms / 1e9:.0f})" for n, ms in line.items()))
        del graphs
        if M in sustained_rows and args.secs > 0:
            names = list(cands)
            per = {n: [] for n in names}
            for r in range(args.rounds):
                order = names[r % len(names):] + names[:r % len(names)]
                for n in order:
                    per[n].append(_sus.sustained([cands[n]], args.secs))
            out = {}
            for n in names:
                ms = statistics.median(p[0] for p in per[n])
                out[n] = {"ms": ms, "mhz": statistics.median(p[1] for p in per[n]),
                          "w": statistics.median(p[2] for p in per[n]), "rounds": [p[0] for p in per[n]]}
            res["sustained"][M] = out
            base = out["unfused"]["ms"]
            print(f"M={M} sustained: " + ", ".join(
                f"{n} {v['ms']:.4f} ms ({v['ms'] / base:.3f}, {v['mhz']:.0f} MHz, {v['w']:.0f} W)"
                for n, v in out.items()))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
