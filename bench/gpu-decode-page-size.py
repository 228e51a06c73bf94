# Decode attention at the burst's batch over KV blocks of 16, 32, 64 and 128 tokens (`option.block_size`): the shipped
# kernels/paged_attention.py decode launch (64-key tiles), one Llama-3-8B layer (32 query / 8 KV heads, head_dim 128,
# bf16 cache), the same logical K/V scattered into each page size's cache. Block tables as a burst lays them out
# ("burst": each sequence's prompt blocks in one run, taken in admission order, then its decode blocks one per page
# boundary, all sequences' taken together) or drawn at random. Every variant's output is compared with the first's
# (bit-equal expected: the same tiles in the same order). CUDA graphs of 4 calls, interleaved rounds, median ms per
# call, and the K/V read rate.
#   python3 bench/gpu-decode-page-size.py [--batch 256] [--contexts 520,640,768] [--prompt 512]
import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, HERE)
from gpu_timing import graph_of, interleaved_rounds  # noqa: E402
from lmi_executor.attention import AttentionMetadata  # noqa: E402
from lmi_executor.kernels import paged_attention as pa  # noqa: E402

H, KVH, D = 32, 8, 128


def block_table(batch: int, max_ctx: int, page: int, prompt: int, layout: str) -> torch.Tensor:
    nb = (max_ctx + page - 1) // page
    if layout == "random":
        return torch.randperm(batch * nb, device="cuda")[: batch * nb].to(torch.int32).view(batch, nb)
    pb = (prompt + page - 1) // page
    bt = torch.empty((batch, nb), dtype=torch.int32)
    for s in range(batch):
        bt[s, :pb] = torch.arange(s * pb, (s + 1) * pb)
    for j in range(pb, nb):
        bt[:, j] = batch * pb + (j - pb) * batch + torch.arange(batch)
    return bt.cuda()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--contexts", default="520,640,768")
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--layouts", default="burst,random")
    args = ap.parse_args()
    B = args.batch
    ctxs = [int(c) for c in args.contexts.split(",")]
    max_ctx = max(ctxs)
    torch.manual_seed(0)
    k_log = torch.randn((B, max_ctx, KVH, D), device="cuda", dtype=torch.bfloat16)
    v_log = torch.randn((B, max_ctx, KVH, D), device="cuda", dtype=torch.bfloat16)
    q = torch.randn((B, H, D), device="cuda", dtype=torch.bfloat16)
    pos = torch.arange(max_ctx, device="cuda")
    pages = (16, 32, 64, 128)
    for layout in args.layouts.split(","):
        caches = {}
        for page in pages:
            bt = block_table(B, max_ctx, page, args.prompt, layout)
            nblocks = int(bt.max().item()) + 1
            kc = torch.full((nblocks, page, KVH, D), float("nan"), device="cuda", dtype=torch.bfloat16)
            vc = torch.full_like(kc, float("nan"))
            slots = (bt[:, pos // page].long() * page + pos % page).view(-1)  # [B * max_ctx]
            kc.view(-1, KVH, D)[slots] = k_log.view(-1, KVH, D)
            vc.view(-1, KVH, D)[slots] = v_log.view(-1, KVH, D)
            caches[page] = (kc, vc, bt)
        for ctx in ctxs:
            graphs, outs = {}, {}
            for page in pages:
                kc, vc, bt = caches[page]
                meta = AttentionMetadata(
                    slot_mapping=torch.zeros(B, dtype=torch.int64, device="cuda"),
                    query_start_loc=torch.arange(B + 1, dtype=torch.int32, device="cuda"),
                    seq_lens=torch.full((B,), ctx, dtype=torch.int32, device="cuda"), block_tables=bt,
                    max_query_len=1, max_seq_len=0, query_start_loc_cpu=list(range(B + 1)), seq_lens_cpu=[ctx] * B)
                name = f"page {page}"

                def call(kc=kc, vc=vc, meta=meta):
                    return pa.paged_attention(q, kc, vc, meta, D**-0.5)
                outs[name] = call().clone()
                graphs[name] = graph_of([call] * 4)
            ref = next(iter(outs.values()))
            res = interleaved_rounds(graphs, rounds=7, replays=20)
            kv_gb = B * ctx * KVH * D * 2 * 2 / 1e9
            for name, xs in res.items():
                ms = xs[len(xs) // 2] / 4
                same = torch.equal(outs[name], ref)
                err = (outs[name].float() - ref.float()).abs().max().item()
                print(f"{layout:6s} {B} x {ctx} | {name:9s} | {1000 * ms:7.1f} us | {kv_gb / ms:5.2f} TB/s | "
                      f"{'bit-equal' if same else f'max diff {err:.2e}'}", flush=True)
            del graphs


if __name__ == "__main__":
    main()
