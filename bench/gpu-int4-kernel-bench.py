# The int4 matmul kernel against cuBLAS bf16 and our int8 kernel at the Llama-3-8B projection shapes, and a
# sweep of its tiles: each timing replays a CUDA graph over enough distinct weight copies (> 400 MB) that
# nothing is served from L2. Reports microseconds per matmul and TB/s over the quantized bytes (codes +
# scales), next to a device-to-device copy's rate. Usage: python3 bench/gpu-int4-kernel-bench.py [--json-out F]
import argparse
import itertools
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))

from lmi_executor.kernels.int4_matmul import GEMV_MAX_ROWS, int4_dequantize, int4_linear, pick_config  # noqa: E402
from lmi_executor.kernels.int8_matmul import int8_linear  # noqa: E402
from lmi_executor.quant import Int4Weight, quantize_int8  # noqa: E402
from gpu_timing import graph_time as _graph_ms  # noqa: E402


def graph_time(fns, reps=10, rounds=5):
    """Median seconds per fn call: `rounds` timings of `reps` graph replays (bench/gpu_timing.py)."""
    return _graph_ms(fns, reps=rounds, replays_per_timing=reps) / 1000


SHAPES = {"qkv": (6144, 4096), "o": (4096, 4096), "gate_up": (28672, 4096), "down": (4096, 14336)}


def rand_int4(N, K, group=128):
    G = K // group
    s = (torch.rand((G, N), device="cuda") * 0.002 + 0.001).half()
    return Int4Weight(torch.randint(0, 256, (N, K // 2), dtype=torch.uint8, device="cuda"), s, (-7.5 * s.float()).half(),
                      group)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json-out", default="")
    ap.add_argument("--quick", action="store_true", help="only the default tiles, no sweep")
    ap.add_argument("--rows", default="1,4,8,64,512", help="activation rows M to measure")
    ap.add_argument("--sweep-rows", default="1,4,8", help="rows at which to sweep tiles")
    a = ap.parse_args()
    res = {"device": torch.cuda.get_device_name(), "shapes": {}}
    n = 1 << 28
    src, dst = torch.empty(n, dtype=torch.float32, device="cuda"), torch.empty(n, dtype=torch.float32, device="cuda")
    src.normal_()
    t = graph_time([lambda: dst.copy_(src)], reps=5)
    res["copyTBps"] = 2 * 4 * n / t / 1e12
    print(f"device-to-device copy: {res['copyTBps']:.2f} TB/s (read + write)", flush=True)
    del src, dst
    for name, (N, K) in SHAPES.items():
        ws = [rand_int4(N, K) for _ in range(max(2, -(-400_000_000 // (N * K // 2))))]
        nbytes = ws[0].storage_bytes()
        wb = [torch.randn((N, K), device="cuda").to(torch.bfloat16) * 0.02 for _ in range(max(2, -(-400_000_000 // (N * K * 2))))]
        w8 = [quantize_int8(w) for w in wb[: max(2, -(-400_000_000 // (N * K)))]]
        out = {}
        for M in [int(v) for v in a.rows.split(",")]:
            x = torch.randn((M, K), device="cuda").to(torch.bfloat16)
            r = {"bf16Us": 1e6 * graph_time([lambda w=w: torch.nn.functional.linear(x, w) for w in wb])}
            if M <= 512:
                r["int8Us"] = 1e6 * graph_time([lambda w=w: int8_linear(x, w.q, w.scale) for w in w8])
            c = pick_config(M, N, K, 128)
            r["defaultConfig"] = c
            r["int4Us"] = 1e6 * graph_time([lambda w=w: int4_linear(x, w) for w in ws])
            r["int4TBps"] = nbytes / (r["int4Us"] / 1e6) / 1e12
            r["dequantCublasUs"] = 1e6 * graph_time(
                [lambda w=w: torch.nn.functional.linear(x, int4_dequantize(w, torch.bfloat16)) for w in ws[:2]])
            if not a.quick and str(M) in a.sweep_rows.split(","):
                if M <= GEMV_MAX_ROWS:
                    grid = [dict(kernel="gemv", BLOCK_N=bn, num_warps=nw, num_stages=st, split=sp)
                            for bn, nw, st, sp in itertools.product((16, 32, 64, 128), (2, 4, 8), (2, 4), (1, 2, 4, 8, 16))]
                elif M <= 16:
                    grid = [dict(BLOCK_M=16, BLOCK_N=bn, num_warps=nw, num_stages=st, split=sp)
                            for bn, nw, st, sp in itertools.product((64, 128), (2, 4), (3,), (2, 4, 8))]
                else:
                    grid = [dict(BLOCK_M=bm, BLOCK_N=bn, num_warps=nw, num_stages=st, split=1)
                            for bm, bn, nw, st in itertools.product((64, 128), (64, 128), (4, 8), (3, 4))]
                sweep = []
                for cfg in grid:
                    try:
                        us = 1e6 * graph_time([lambda w=w: int4_linear(x, w, cfg) for w in ws], reps=5, rounds=3)
                    except Exception as e:  # a tile that does not compile (resources): skip it
                        sweep.append({**cfg, "error": str(e)[:120]})
                        continue
                    sweep.append({**cfg, "us": us})
                ok = sorted((s for s in sweep if "us" in s), key=lambda s: s["us"])
                r["best"] = ok[:5]
                r["sweep"] = sweep
            out[M] = r
            b = r.get("best", [{}])[0]
            print(f"{name:8s} M={M:4d} bf16 {r['bf16Us']:8.1f} us  int8 {r.get('int8Us', 0):8.1f}  int4 {r['int4Us']:8.1f} "
                  f"({r['int4TBps']:.2f} TB/s)  deq+cuBLAS {r['dequantCublasUs']:8.1f}  best {b.get('us', 0):8.1f} "
                  f"{ {k: v for k, v in b.items() if k != 'us'} }", flush=True)
        res["shapes"][name] = out
        del ws, wb, w8
        torch.cuda.empty_cache()
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
