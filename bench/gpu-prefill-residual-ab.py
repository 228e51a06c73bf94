# Prompt steps with the o and down projections added into the residual inside cuBLAS (beta = 1, then a plain
# RMSNorm: models/llama.RESIDUAL_IN_GEMM_ABOVE_ROWS) against writing each projection out and adding it in the
# fused add + RMSNorm kernel (before). Llama-3-8B shape, bf16 dummy weights, the whole forward of one prompt step
# (B prompts of L new tokens each, eager: prompt steps of this size run without a graph), the variants timed in
# interleaved rounds (CUDA events around each forward, median per round, median round printed; the first
# variant again last shows the drift). "diff": logits against the first variant's (relative norm).
#   python3 bench/gpu-prefill-residual-ab.py [--cases 16x512,2x4096,1x512] [--rounds 5]
import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, HERE)
from bench_scripts import load_script  # noqa: E402

_eb = load_script("gpu-executor-bench.py")
from lmi_executor.attention import AttentionMetadata  # noqa: E402
from lmi_executor.config import ExecutorOptions  # noqa: E402
from lmi_executor.models import llama  # noqa: E402
from lmi_executor.worker import Worker  # noqa: E402

VARIANTS = [("add in the norm (before)", 10**9), ("add in the GEMM", llama.RESIDUAL_IN_GEMM_ABOVE_ROWS),
            ("before, again", 10**9)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="16x512,2x4096,1x512")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    cases = [tuple(int(x) for x in c.split("x")) for c in a.cases.split(",")]
    num_blocks = max(B * ((L + 15) // 16) for B, L in cases) + 16
    w = Worker(ExecutorOptions(model_dir=_eb.llama3_8b_dir(), device="cuda", dtype="bf16", load_format="dummy",
                               max_num_seqs=16, max_model_len=8192, max_num_batched_tokens=8192,
                               enable_cuda_graph=False), 0, 1)
    w.load({})
    w.init_cache({"numBlocks": num_blocks})
    model, caches, dev = w.runner.model, w.runner.kv_caches, torch.device("cuda")
    bound = llama.RESIDUAL_IN_GEMM_ABOVE_ROWS
    for B, L in cases:
        nb = (L + 15) // 16
        bt = torch.randperm(num_blocks, device=dev)[: B * nb].to(torch.int32).view(B, nb).contiguous()
        pos = torch.arange(L, device=dev).repeat(B)
        slots = (bt.long()[:, torch.arange(L, device=dev) // 16] * 16 + torch.arange(L, device=dev) % 16).reshape(-1)
        qsl = list(range(0, B * L + 1, L))
        ids = torch.randint(0, 128000, (B * L,), device=dev)
        rows = torch.arange(L - 1, B * L, L, device=dev)

        def meta():
            return AttentionMetadata(
                slot_mapping=slots, query_start_loc=torch.tensor(qsl, dtype=torch.int32, device=dev),
                seq_lens=torch.full((B,), L, dtype=torch.int32, device=dev), block_tables=bt, max_query_len=L,
                max_seq_len=L, query_start_loc_cpu=qsl, seq_lens_cpu=[L] * B)

        m = meta()
        outs, times = {}, {n: [] for n, _ in VARIANTS}
        for n, v in VARIANTS:  # warm-up (Triton compiles, cuBLAS picks kernels) and the logits
            llama.RESIDUAL_IN_GEMM_ABOVE_ROWS = v
            outs[n] = model.forward(ids, pos, m, caches, rows).float()
            model.forward(ids, pos, m, caches, rows)
        torch.cuda.synchronize()
        for _ in range(a.rounds):
            for n, v in VARIANTS:
                llama.RESIDUAL_IN_GEMM_ABOVE_ROWS = v
                ev = []
                for _ in range(a.reps):
                    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    s.record()
                    model.forward(ids, pos, m, caches, rows)
                    e.record()
                    ev.append((s, e))
                torch.cuda.synchronize()
                times[n].append(sorted(s.elapsed_time(e) for s, e in ev)[a.reps // 2])
        llama.RESIDUAL_IN_GEMM_ABOVE_ROWS = bound
        ref = outs[VARIANTS[0][0]]
        cells = " | ".join(f"{n} {sorted(t)[len(t) // 2]:.2f} ms (diff {((outs[n] - ref).norm() / ref.norm()).item():.4f})"
                           for n, t in times.items())
        print(f"{B} x {L} | {cells}", flush=True)


if __name__ == "__main__":
    main()
