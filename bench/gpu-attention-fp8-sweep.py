# Decode attention over a bf16 vs an fp8 (e4m3) paged KV cache at large batch, per launch configuration of
# kernels/paged_attention.py (one program per sequence and KV head): milliseconds per call and the KV read
# rate, Llama-3-8B attention shape (32 query / 8 KV heads, head_dim 128, 16-token pages drawn at random).
# Each configuration is first checked against the default launch's output on the same inputs.
#   python3 bench/gpu-attention-fp8-sweep.py [--batch 256] [--ctx 520,2048] [--json-out F]
import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("LMI_PYTHON_DIR") or os.path.join(HERE, "..", "python"))
sys.path.insert(0, HERE)

from gpu_timing import graph_time  # noqa: E402
from lmi_executor.attention import AttentionMetadata  # noqa: E402
from lmi_executor.kernels.paged_attention import decode_launch, paged_attention  # noqa: E402

CONFIGS = [{}] + [{"block_n": bn, "num_warps": w, "num_stages": s}
                  for bn in (64, 128, 256) for w in (4, 8) for s in (2, 3, 4)]


def batch(B, ctx, dtype, seed=0):
    dev, page, kvh, hd, H = "cuda", 16, 8, 128, 32
    nb = (ctx + page - 1) // page
    blocks = B * nb + 8
    g = torch.Generator(device=dev).manual_seed(seed)
    k = torch.randn((blocks, page, kvh, hd), generator=g, device=dev).to(dtype)
    v = torch.randn((blocks, page, kvh, hd), generator=g, device=dev).to(dtype)
    table = torch.randperm(blocks, device=dev)[: B * nb].view(B, nb).to(torch.int32)
    q = torch.randn((B, H, hd), generator=g, device=dev).to(torch.bfloat16)
    meta = AttentionMetadata(slot_mapping=torch.zeros(B, dtype=torch.long, device=dev),
                             query_start_loc=torch.arange(B + 1, dtype=torch.int32, device=dev),
                             seq_lens=torch.full((B,), ctx, dtype=torch.int32, device=dev), block_tables=table,
                             max_query_len=1, max_seq_len=ctx, query_start_loc_cpu=list(range(B + 1)),
                             seq_lens_cpu=[ctx] * B)
    return q, k, v, meta


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--ctx", default="520,2048")
    ap.add_argument("--json-out", default="")
    args = ap.parse_args()
    print("default launch at this batch:", decode_launch(args.batch, 8))
    rows = []
    for ctx in [int(c) for c in args.ctx.split(",")]:
        for dtype in (torch.bfloat16, torch.float8_e4m3fn):
            q, k, v, meta = batch(args.batch, ctx, dtype)
            kv_bytes = 2 * args.batch * ctx * 8 * 128 * k.element_size()
            ref = paged_attention(q, k, v, meta, 128**-0.5)
            for cfg in CONFIGS:
                try:
                    out = paged_attention(q, k, v, meta, 128**-0.5, launch=cfg)
                    err = ((out.float() - ref.float()).norm() / ref.float().norm()).item()
                    ms = graph_time([lambda cfg=cfg: paged_attention(q, k, v, meta, 128**-0.5, launch=cfg)], reps=9)
                except Exception as e:  # a config that does not fit (shared memory, registers): note it
                    rows.append({"ctx": ctx, "dtype": str(dtype), "cfg": cfg, "error": repr(e)[:200]})
                    print(ctx, dtype, cfg, "error", repr(e)[:120], flush=True)
                    continue
                r = {"ctx": ctx, "dtype": str(dtype).replace("torch.", ""), "cfg": cfg or "default", "ms": ms,
                     "TBps": kv_bytes / ms / 1e9, "relErrVsDefault": err}
                rows.append(r)
                print(json.dumps(r), flush=True)
    print("\n| ctx | kv dtype | best launch | ms | TB/s of KV | default ms |\n|---|---|---|---|---|---|")
    for ctx in sorted({r["ctx"] for r in rows}):
        for dt in ("bfloat16", "float8_e4m3fn"):
            rs = [r for r in rows if r["ctx"] == ctx and r.get("dtype") == dt and "ms" in r]
            if not rs:
                continue
            best = min(rs, key=lambda r: r["ms"])
            dflt = next(r for r in rs if r["cfg"] == "default")
            print(f"| {ctx} | {dt} | {best['cfg']} | {best['ms']:.4f} | {best['TBps']:.2f} | {dflt['ms']:.4f} |")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
