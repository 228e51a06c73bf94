# Tensor-parallel check: every supported zoo model (fp32) at tensor_parallel_degree=N, one process per rank
# (NCCL on GPUs, gloo with --device cpu), greedy continuations alone and batched with chunked prefill must
# equal the transformers goldens, with CUDA graphs on and off. Each rank drives the same plans in the same
# order, as rank 0's relay would make them. Usage: python3 scripts/gpu/tp-check.py [--tp 2] [--device cuda]
import argparse
import json
import os
import sys

import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path[:0] = [os.path.join(ROOT, "python"), os.path.join(ROOT, "python", "tests")]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tp_ranks import hand_in, rank_worker, run_ranks, verdict  # noqa: E402


def rank_main(rank, world, device, port, result_q):
    from lmi_executor.config import SUPPORTED_ARCHITECTURES
    from test_executor_model import greedy_goldens_batched

    os.environ["LOCAL_RANK"] = str(rank)
    torch.backends.cuda.matmul.allow_tf32 = False
    report = []
    zoo = os.path.join(ROOT, "models", "zoo")
    tp = None  # the first Worker's process group, which later models reuse
    for name in sorted(os.listdir(zoo)):
        d = os.path.join(zoo, name)
        if not os.path.exists(os.path.join(d, "golden.json")):
            continue
        with open(os.path.join(d, "config.json")) as f:
            if json.load(f)["architectures"][0] not in SUPPORTED_ARCHITECTURES:
                continue
        with open(os.path.join(d, "golden.json")) as f:
            cases = json.load(f)["cases"]
        for graphs in (False, True) if device == "cuda" else (False,):
            w = rank_worker(rank, world, port, tp, model_dir=d, device=device, dtype="fp32", block_size=16,
                            max_num_seqs=16, enable_cuda_graph=graphs)
            tp = w.tp
            w.load({})
            w.init_cache({"numBlocks": 256})
            ok = greedy_goldens_batched(w, cases)
            report.append({"model": name, "graphs": graphs, "tokenExact": ok})
    hand_in(rank, report, result_q, tp)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tp", type=int, default=2)
    ap.add_argument("--device", default="cuda")
    a = ap.parse_args()
    report, exits = run_ranks(rank_main, a.tp, a.device)
    for r in report:
        print(f"| TP={a.tp} {a.device} | {r['model']} | graphs={r['graphs']} | token-exact={r['tokenExact']} |")
    verdict("tp-check", report, [r for r in report if not r["tokenExact"]], exits)


if __name__ == "__main__":
    main()
