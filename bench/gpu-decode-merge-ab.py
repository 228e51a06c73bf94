# A/B of the split-decode merge at batch 1 (Llama-3-8B shape, bf16, dummy weights, one GPU): the batch-1
# forward plus greedy sampling captured in one CUDA graph per variant, replays timed in interleaved rounds
# (7 rounds x 30 replays each, median of a round, median of the rounds), so clock drift falls on every
# variant alike. Variants: the merge before 2040861 (a loop of loads per split, launched normally), the
# one-trip merge launched normally (LMI_ATTN_MERGE_PDL=0), and the one-trip merge as a dependent launch of the
# attention kernel (the default). The first variant is repeated last. Logits are compared with the first one.
#   python3 bench/gpu-decode-merge-ab.py [--ctx 128,300]
# (The numbers in docs/benchmarks.md, fifth session, come from a scratch copy of this script.)
import argparse
import os
import sys

import torch
import triton
import triton.language as tl

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, HERE)
from bench_scripts import load_script  # noqa: E402

_eb = load_script("gpu-executor-bench.py")

from gpu_timing import captured, interleaved_rounds  # noqa: E402
from lmi_executor.kernels import paged_attention as pa  # noqa: E402
from lmi_executor.kernels.greedy import greedy_into  # noqa: E402


@triton.jit
def _loop_merge(out_ptr, part_acc_ptr, part_ml_ptr, num_rows, NUM_SPLITS: tl.constexpr, SPLITS_P2: tl.constexpr,
                HEAD_DIM: tl.constexpr, WAIT: tl.constexpr):
    """The merge kernel as it was before 2040861: the splits' maxima, then their sums and outputs, one split at
    a time (same signature as today's, SPLITS_P2 and WAIT unused)."""
    row = tl.program_id(0).to(tl.int64)
    d = tl.arange(0, HEAD_DIM)
    m = tl.full([1], -1.0e30, dtype=tl.float32)
    for s in range(NUM_SPLITS):
        m = tl.maximum(m, tl.load(part_ml_ptr + (s * num_rows + row) * 2 + tl.arange(0, 1)))
    l_tot = tl.zeros([1], dtype=tl.float32)
    acc = tl.zeros([HEAD_DIM], dtype=tl.float32)
    for s in range(NUM_SPLITS):
        r = s * num_rows + row
        ms = tl.load(part_ml_ptr + r * 2 + tl.arange(0, 1))
        ls = tl.load(part_ml_ptr + r * 2 + 1 + tl.arange(0, 1))
        w = tl.exp(ms - m)
        l_tot += ls * w
        acc += tl.load(part_acc_ptr + r * HEAD_DIM + d) * w
    l_tot = tl.where(l_tot == 0.0, 1.0, l_tot)
    tl.store(out_ptr + row * HEAD_DIM + d, (acc / l_tot).to(out_ptr.dtype.element_ty))


VARIANTS = [  # (name, merge kernel, merge as a dependent launch)
    ("loop merge, normal launch (before)", _loop_merge, False),
    ("one-trip merge, normal launch", None, False),
    ("one-trip merge, dependent launch (default)", None, True),
    ("loop merge, normal launch (again)", _loop_merge, False),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ctx", default="128,300", help="context lengths, comma-separated")
    args = ap.parse_args()
    w = _eb.batch1_worker()
    model, caches = w.runner.model, w.runner.kv_caches
    dev = torch.device("cuda")
    pa.WORKSPACE.get(16, 1, model.nq, model.cfg.head_dim, dev)
    last = torch.zeros(16, dtype=torch.int64, device=dev)
    rows = torch.zeros(1, dtype=torch.int64, device=dev)
    today = pa._merge_kernel
    saved_pdl = pa.FLAGS["merge_pdl"]
    print("| context | variant | replay ms: median of 7 rounds (min-max) | logits rel. err vs first |")
    print("|---|---|---|---|")
    for ctx in [int(c) for c in args.ctx.split(",")]:
        ids, pos, meta, idx = _eb.batch1_inputs(ctx, 250, dev)

        def step():
            logits = model.forward(ids, pos, meta, caches, idx)
            out = torch.empty((2, 1), dtype=torch.float64, device=dev)
            greedy_into(logits, out, rows=rows, last_token=last)
            return logits

        graphs, ref, errs = {}, None, {}
        try:
            for name, kernel, pdl in VARIANTS:
                pa._merge_kernel = kernel or today
                pa.FLAGS["merge_pdl"] = pdl
                out, g = captured(step, warm=5)
                ref = out if ref is None else ref
                errs[name] = ((out - ref).norm() / ref.norm()).item()
                graphs[name] = g
        finally:
            pa._merge_kernel, pa.FLAGS["merge_pdl"] = today, saved_pdl
        rounds = interleaved_rounds(graphs)
        for n, xs in rounds.items():
            print(f"| {ctx} | {n} | {xs[3]:.4f} ({xs[0]:.4f}-{xs[-1]:.4f}) | {errs[n]:.1e} |")
        del graphs


if __name__ == "__main__":
    main()
