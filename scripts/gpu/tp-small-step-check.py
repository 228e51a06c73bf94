# Decode-sized steps under tensor parallelism: the one-row GEMV forward (kernels/gemv.py, steps of at most 8
# tokens, bf16) against the general forward (cuBLAS, LMI's other path) on the same ranks, same KV cache and same
# step: every zoo model without experts at TP=N, batches 1, 3 and 8 after a prefill of the golden prompts. Prints
# the logits' relative difference and whether the argmax agrees per row; fails above --tol. The zoo models are 64
# wide: a summation order changes nothing a bf16 rounding keeps, so equal logits are the expected result there, and
# a misplaced all-reduce or residual add shows as a large difference.
#   python3 scripts/gpu/tp-small-step-check.py [--tp 2] [--tol 2e-2]
import argparse
import json
import os
import sys


ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path[:0] = [os.path.join(ROOT, "python"), os.path.join(ROOT, "python", "tests")]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tp_ranks import hand_in, rank_worker, run_ranks, verdict  # noqa: E402

MODELS = ("llama", "mistral", "phi3", "qwen2", "qwen3")


def rank_main(rank, world, port, result_q):
    from test_executor_model import Driver, sampling

    os.environ["LOCAL_RANK"] = str(rank)
    report, tp = [], None
    for name in MODELS:
        d = os.path.join(ROOT, "models", "zoo", name)
        with open(os.path.join(d, "golden.json")) as f:
            cases = json.load(f)["cases"]
        w = rank_worker(rank, world, port, tp, model_dir=d, device="cuda", dtype="bf16", block_size=16,
                        max_num_seqs=16, enable_cuda_graph=False)
        tp = w.tp
        w.load({})
        w.init_cache({"numBlocks": 256})
        model = w.runner.model
        for B in (1, 3, 8):
            drv = Driver(w, seed=B)
            prompts = {f"r{i}": cases[i % len(cases)]["input_ids"] for i in range(B)}
            drv.run(new=[(rid, p, len(p), sampling()) for rid, p in prompts.items()])
            states = [w.runner.store.running[rid] for rid in prompts]
            ids = [st.token_ids[-1] for st in states]
            starts = [len(st.token_ids) - 1 for st in states]
            args = (ids, [1] * B, starts, [s + 1 for s in starts], [st.row for st in states], list(range(B)))
            assert model._small_step_kernels(B) is not None, "the GEMV path is off for this model"
            small = w.runner._forward_eager(*args).float()
            saved, model._gemv = model._gemv, False
            general = w.runner._forward_eager(*args).float()
            model._gemv = saved
            err = ((small - general).norm() / general.norm()).item()
            agree = int((small.argmax(-1) == general.argmax(-1)).sum())
            report.append({"model": name, "batch": B, "relErr": err, "argmaxAgree": f"{agree}/{B}"})
            drv.run(finished=list(prompts))
    hand_in(rank, report, result_q, tp)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tp", type=int, default=2)
    ap.add_argument("--tol", type=float, default=2e-2)
    a = ap.parse_args()
    report, exits = run_ranks(rank_main, a.tp)
    for r in report:
        print(f"| TP={a.tp} | {r['model']} | batch {r['batch']} | GEMV vs general logits rel. diff {r['relErr']:.2e} | "
              f"argmax agree {r['argmaxAgree']} |")
    verdict("tp-small-step-check", report, [r for r in report if r["relErr"] > a.tol], exits)


if __name__ == "__main__":
    main()
