# Paged attention over a bf16 vs an fp8 (e4m3) KV cache, per launch configuration of
# kernels/paged_attention.py: milliseconds per call, the KV read rate (decode) or TFLOP/s (prefill), and the
# error against the fp64 reference over the same cache. Llama-3-8B attention shape (32 query / 8 KV heads,
# head_dim 128, 16-token pages drawn at random). "f16" configurations compute in fp16 (fp8 caches only).
#   python3 bench/gpu-attention-fp8-sweep.py [--batch 256] [--ctx 520,768,2048]     decode steps
#   python3 bench/gpu-attention-fp8-sweep.py --prefill 16x512,2x4096                 prefill steps (new tokens)
#   [--json-out F]
import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("LMI_PYTHON_DIR") or os.path.join(HERE, "..", "python"))
sys.path.insert(0, HERE)

from gpu_timing import graph_time  # noqa: E402
from lmi_executor.attention import AttentionMetadata, reference_attention  # noqa: E402
from lmi_executor.kernels.attention_launch import decode_launch, prefill_launch  # noqa: E402
from lmi_executor.kernels.paged_attention import paged_attention  # noqa: E402

PAGE, KVH, HD, H = 16, 8, 128, 32
SCALE = HD**-0.5

DECODE_CONFIGS = (
    [{"block_n": bn, "num_warps": w, "num_stages": s, "f16": False}
     for bn in (32, 64, 128) for w in (1, 2, 4) for s in (3, 5)]
    + [{"block_n": bn, "num_warps": w, "num_stages": s, "f16": True}
       for bn in (32, 64, 128) for w in (1, 2, 4) for s in (4, 5, 6)])
PREFILL_CONFIGS = (
    [{"block_q": bq, "block_n": bn, "num_warps": w, "num_stages": s, "f16": False}
     for bq in (16, 32) for bn in (32, 64, 128) for w in (4, 8) for s in (2, 3)]
    + [{"block_q": 16, "block_n": bn, "num_warps": w, "num_stages": s, "f16": True}
       for bn in (32, 64) for w in (4, 8) for s in (2, 3)])


def inputs(B, ctx, q_len, dtype, seed=0):
    """B sequences of `ctx` cached tokens, the last `q_len` of them queried (1: a decode step)."""
    dev = "cuda"
    nb = (ctx + PAGE - 1) // PAGE
    blocks = B * nb + 8
    g = torch.Generator(device=dev).manual_seed(seed)
    k = torch.randn((blocks, PAGE, KVH, HD), generator=g, device=dev).to(dtype)
    v = torch.randn((blocks, PAGE, KVH, HD), generator=g, device=dev).to(dtype)
    table = torch.randperm(blocks, device=dev)[: B * nb].view(B, nb).to(torch.int32)
    q = torch.randn((B * q_len, H, HD), generator=g, device=dev).to(torch.bfloat16)
    return q, k, v, table


def metadata(B, ctx, q_len, table):
    qsl = list(range(0, B * q_len + 1, q_len))
    dev = table.device
    return AttentionMetadata(slot_mapping=torch.zeros(B * q_len, dtype=torch.long, device=dev),
                             query_start_loc=torch.tensor(qsl, dtype=torch.int32, device=dev),
                             seq_lens=torch.full((B,), ctx, dtype=torch.int32, device=dev), block_tables=table,
                             max_query_len=q_len, max_seq_len=ctx, query_start_loc_cpu=qsl, seq_lens_cpu=[ctx] * B)


def sweep(B, ctx, q_len, configs, rows, label):
    for dtype in (torch.bfloat16, torch.float8_e4m3fn):
        q, k, v, table = inputs(B, ctx, q_len, dtype)
        kv = k.element_size()
        n_ref = min(B, 4)  # the fp64 reference over the first sequences (it loops in Python)
        ref = reference_attention(q[: n_ref * q_len].double(), k.double(), v.double(),
                                  metadata(n_ref, ctx, q_len, table[:n_ref]), SCALE)
        default = decode_launch(B, KVH, kv) if q_len == 1 else prefill_launch(H // KVH, HD, kv, ctx)
        meta = metadata(B, ctx, q_len, table)
        # Warm the clocks (the fp64 reference left the GPU idle): ~0.3 s of the default launch before timing.
        graph_time([lambda: paged_attention(q, k, v, meta, SCALE)], reps=30, replays_per_timing=50)
        for cfg in [{}] + configs:
            if cfg.get("f16") and kv != 1:
                continue
            try:
                out = paged_attention(q, k, v, meta, SCALE, launch=cfg)
                err = ((out[: n_ref * q_len].double() - ref).norm() / ref.norm()).item()
                ms = graph_time([lambda cfg=cfg: paged_attention(q, k, v, meta, SCALE, launch=cfg)], reps=9)
            except Exception as e:  # a config that does not fit (shared memory, registers): note it
                rows.append({"case": label, "dtype": str(dtype), "cfg": cfg, "error": repr(e)[:200]})
                print(label, dtype, cfg, "error", repr(e)[:120], flush=True)
                continue
            r = {"case": label, "dtype": str(dtype).replace("torch.", ""), "cfg": cfg or f"default {default}",
                 "ms": ms, "relErrVsF64": err}
            if q_len == 1:
                r["TBps"] = 2 * B * ctx * KVH * HD * kv / ms / 1e9
            else:
                r["TFLOPs"] = 4 * B * (q_len * q_len / 2) * HD * H / ms / 1e9
            rows.append(r)
            print(json.dumps(r), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--ctx", default="520,768,2048")
    ap.add_argument("--prefill", default="", help="BxL cases of L new tokens per sequence, e.g. 16x512,2x4096")
    ap.add_argument("--json-out", default="")
    args = ap.parse_args()
    rows = []
    if args.prefill:
        for case in args.prefill.split(","):
            B, L = (int(x) for x in case.split("x"))
            sweep(B, L, L, PREFILL_CONFIGS, rows, f"prefill {B}x{L}")
    else:
        for ctx in [int(c) for c in args.ctx.split(",")]:
            sweep(args.batch, ctx, 1, DECODE_CONFIGS, rows, f"decode {args.batch}x{ctx}")
    print("\n| case | kv dtype | best launch | ms | rate | default ms |\n|---|---|---|---|---|---|")
    for case in dict.fromkeys(r["case"] for r in rows):
        for dt in ("bfloat16", "float8_e4m3fn"):
            rs = [r for r in rows if r["case"] == case and r.get("dtype") == dt and "ms" in r]
            if not rs:
                continue
            best = min(rs, key=lambda r: r["ms"])
            dflt = next(r for r in rs if str(r["cfg"]).startswith("default"))
            rate = f"{best['TBps']:.2f} TB/s" if "TBps" in best else f"{best['TFLOPs']:.0f} TFLOP/s"
            print(f"| {case} | {dt} | {best['cfg']} | {best['ms']:.4f} | {rate} | {dflt['ms']:.4f} |")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
