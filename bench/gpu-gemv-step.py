# The batch-1 decode step of the Llama-3-8B-shaped dummy model (bf16) under each switch of the small-step path
# (kernels/gemv.py FLAGS: pdl, rope; the one-row launch config), in one process: for every variant, a CUDA
# graph of one forward at context 520 is captured and its replay timed (median of 60, events), the logits
# compared with the first variant's, and the kernels of one eager forward listed (torch.profiler; with PDL a
# kernel's time includes its wait for the previous one). The replays are then timed again in interleaved
# rounds (each variant 30 replays per round, 7 rounds), so clock drift over the run falls on every variant
# alike. Prints a table last.
#   python3 bench/gpu-gemv-step.py [--json-out F]
import argparse
import json
import os
import sys

import torch
from torch.profiler import ProfilerActivity, profile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("LMI_PYTHON_DIR") or os.path.join(HERE, "..", "python"))
sys.path.insert(0, HERE)
from bench_scripts import load_script  # noqa: E402

bench = load_script("gpu-executor-bench.py")

from gpu_timing import interleaved_rounds  # noqa: E402
from lmi_executor.kernels import gemv  # noqa: E402

VARIANTS = [  # "m1": the one-row GEMV launches (paired epilogues, the rest) as (BLOCK_N, BLOCK_K, warps, stages)
    ("before (all off)", {"pdl": False, "rope": False}),
    ("pdl", {"pdl": True, "rope": False}),
    ("rope, no pdl", {"pdl": False, "rope": True}),
    ("pdl+rope (default)", {"pdl": True, "rope": True}),
    ("pdl+rope, launches picked standalone (2 pairs; 4 rows x 1024)",
     {"pdl": True, "rope": True, "m1": ((2, 1024, 8, 2), (4, 1024, 8, 2))}),
    ("pdl+rope, 2 pairs; 4 rows x 2048", {"pdl": True, "rope": True, "m1": ((2, 1024, 8, 2), (4, 2048, 8, 2))}),
    ("pdl+rope, 4 pairs; 4 rows x 1024", {"pdl": True, "rope": True, "m1": ((4, 1024, 8, 2), (4, 1024, 8, 2))}),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ctx", type=int, default=520)
    ap.add_argument("--replays", type=int, default=60)
    ap.add_argument("--json-out", default="")
    args = ap.parse_args()
    w = bench.batch1_worker()
    model, caches = w.runner.model, w.runner.kv_caches
    ids, pos, meta, idx = bench.batch1_inputs(args.ctx, 200, torch.device("cuda"))

    def fwd():
        return model.forward(ids, pos, meta, caches, idx)

    print("triton", __import__("triton").__version__, "torch", torch.__version__, torch.cuda.get_device_name(),
          "pdl supported", gemv.pdl_supported())
    rows, ref, graphs = [], None, {}
    default_config = gemv.config

    def one_row_config(m1):
        def cfg(M, N, K, silu=False):
            return (False,) + m1[0 if silu else 1] if M == 1 else default_config(M, N, K, silu)
        return cfg

    for name, flags in VARIANTS:
        gemv.FLAGS.update({k: v for k, v in flags.items() if k in gemv.FLAGS})
        gemv.config = one_row_config(flags["m1"]) if "m1" in flags else default_config
        try:
            out = fwd()  # compile outside the capture
            torch.cuda.synchronize()
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                glog = fwd()
            torch.cuda.synchronize()
            for _ in range(5):
                g.replay()
            ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(args.replays)]
            for a, b in ev:
                a.record()
                g.replay()
                b.record()
            torch.cuda.synchronize()
            ms = sorted(a.elapsed_time(b) for a, b in ev)[args.replays // 2]
            # Back to back (what pipelined steps do): 50 replays between two events.
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            for _ in range(50):
                g.replay()
            b.record()
            torch.cuda.synchronize()
            b2b = a.elapsed_time(b) / 50
            g.replay()
            torch.cuda.synchronize()
            glog = glog.clone()
            out = fwd().clone()
            if ref is None:
                ref = out
            err = ((out - ref).norm() / ref.norm()).item()
            gerr = ((glog - out).norm() / out.norm()).item()
            same = bool(out.argmax(-1).eq(ref.argmax(-1)).all())
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                fwd()
                torch.cuda.synchronize()
            ka = prof.key_averages()
            key = "device_time_total" if hasattr(ka[0], "device_time_total") else "cuda_time_total"
            total = sum(getattr(e, key) for e in ka) / 1000
            print(f"\n== {name}: replay {ms:.3f} ms (back-to-back {b2b:.3f}), eager kernels {total:.3f} ms, "
                  f"{sum(e.count for e in ka)} kernels; logits vs first {err:.2e} (argmax same {same}), "
                  f"graph vs eager {gerr:.2e}")
            for e in sorted(ka, key=lambda e: -getattr(e, key))[:10]:
                print(f"  {getattr(e, key) / 1000:8.3f} ms  x{e.count:<5d} {e.key[:80]}")
            rows.append({"variant": name, "flags": flags, "replayMs": ms, "backToBackMs": b2b, "eagerKernelMs": total,
                         "kernels": sum(e.count for e in ka), "logitsRelErr": err, "argmaxSame": same,
                         "graphVsEager": gerr})
            graphs[name] = g
        except Exception as ex:  # keep measuring the other variants
            import traceback

            traceback.print_exc()
            rows.append({"variant": name, "flags": flags, "error": repr(ex)[:300]})
    gemv.config = default_config
    # Interleaved rounds: every variant's graph, 30 replays each, round after round.
    rounds = interleaved_rounds(graphs)
    for r in rows:
        if r["variant"] in rounds:
            xs = rounds[r["variant"]]
            r["roundsMs"] = xs
            r["roundsMedianMs"] = xs[len(xs) // 2]
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(rows, f, indent=1)
    print("\n| variant | graph replay ms (first pass) | back-to-back ms | 7 interleaved rounds: median (min-max) ms "
          "| eager kernels ms (count) | logits rel. err vs first |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['variant']} | error: {r['error'][:80]} | | | | |")
        else:
            xs = r["roundsMs"]
            print(f"| {r['variant']} | {r['replayMs']:.3f} | {r['backToBackMs']:.3f} | {r['roundsMedianMs']:.3f} "
                  f"({xs[0]:.3f}-{xs[-1]:.3f}) | {r['eagerKernelMs']:.3f} ({r['kernels']}) | {r['logitsRelErr']:.1e} |")


if __name__ == "__main__":
    main()
