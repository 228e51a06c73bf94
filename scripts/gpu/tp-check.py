# Tensor-parallel check: every supported zoo model (fp32) at tensor_parallel_degree=N, one process per rank
# (NCCL on GPUs, gloo with --device cpu), greedy continuations alone and batched with chunked prefill must
# equal the transformers goldens, with CUDA graphs on and off. Then contrastive search (its look-ahead forward
# and kept hidden states under tensor parallelism): on tiny random llama and qwen3 checkpoints, a contrastive
# request beside a greedy one must pick what the brute-force fp64 reference of the CPU suite picks
# (tests/test_executor_contrastive.py). Each rank drives the same plans in the same order, as rank 0's relay
# would make them. Usage: python3 scripts/gpu/tp-check.py [--tp 2] [--device cuda] [--contrastive-only]
import argparse
import json
import os
import sys
import tempfile

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
    for name in [] if os.environ.get("LMI_TP_CHECK_CONTRASTIVE_ONLY") else sorted(os.listdir(zoo)):
        d = os.path.join(zoo, name)
        if not os.path.exists(os.path.join(d, "golden.json")):
            continue
        with open(os.path.join(d, "config.json")) as f:
            if json.load(f)["architectures"][0] not in SUPPORTED_ARCHITECTURES:
                continue
        with open(os.path.join(d, "golden.json")) as f:
            cases = json.load(f)["cases"]
        for graphs, w in loaded_workers(rank, world, port, tp, device, d, block_size=16, num_blocks=256):
            tp = w.tp
            ok = greedy_goldens_batched(w, cases)
            report.append({"model": name, "graphs": graphs, "tokenExact": ok})
    rows, tp = contrastive_rows(rank, world, device, port, tp)
    hand_in(rank, report + rows, result_q, tp)


def loaded_workers(rank, world, port, tp, device, model_dir, block_size, num_blocks):
    """This rank's fp32 worker for model_dir, loaded with its cache, CUDA graphs off and then (on CUDA) on: yields
    (graphs, worker); every worker after the first joins the first one's process group."""
    for graphs in (False, True) if device == "cuda" else (False,):
        w = rank_worker(rank, world, port, tp, model_dir=model_dir, device=device, dtype="fp32",
                        block_size=block_size, max_num_seqs=16, enable_cuda_graph=graphs)
        tp = w.tp
        w.load({})
        w.init_cache({"numBlocks": num_blocks})
        yield graphs, w


def contrastive_rows(rank, world, device, port, tp) -> tuple:
    """The contrastive rows of the report, and the rank's process group (started here when no zoo model ran)."""
    from test_executor_contrastive import PROMPT, reference
    from test_executor_fixtures import make_checkpoint
    from test_executor_model import Driver, sampling

    rows = []
    s = sampling(strategy="contrastive", topK=4, penaltyAlpha=0.6)
    for kind in ("llama", "qwen3"):
        # Each rank writes its own copy (the checkpoint is a function of its seed), so no rank reads a half-written one.
        d = os.path.join(os.environ["LMI_TP_CHECK_TMP"], f"rank{rank}", kind)
        ck = make_checkpoint(d, kind, seed=len(kind))
        want = reference(ck, PROMPT, 8, 4, 0.6)
        for graphs, w in loaded_workers(rank, world, port, tp, device, d, block_size=4, num_blocks=64):
            tp = w.tp
            drv = Driver(w)
            drv.run(new=[("c", PROMPT, 4, s), ("g", PROMPT, 4, sampling())])  # prompts chunked by 4 tokens
            while drv.reqs["c"]["computed"] < len(PROMPT):
                n = min(4, len(PROMPT) - drv.reqs["c"]["computed"])
                drv.run(cached=[("c", n), ("g", n)])
            for _ in range(7):
                drv.run(cached=[("c", 1), ("g", 1)])
            got = drv.reqs["c"]["tokens"][len(PROMPT):]
            rows.append({"model": f"{kind} (random, contrastive)", "graphs": graphs, "tokenExact": got == want})
    return rows, tp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tp", type=int, default=2)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--contrastive-only", action="store_true", help="skip the zoo's greedy goldens")
    a = ap.parse_args()
    if a.contrastive_only:
        os.environ["LMI_TP_CHECK_CONTRASTIVE_ONLY"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LMI_TP_CHECK_TMP"] = tmp  # the ranks (spawned) inherit it
        report, exits = run_ranks(rank_main, a.tp, a.device)
    for r in report:
        print(f"| TP={a.tp} {a.device} | {r['model']} | graphs={r['graphs']} | token-exact={r['tokenExact']} |")
    verdict("tp-check", report, [r for r in report if not r["tokenExact"]], exits)


if __name__ == "__main__":
    main()
