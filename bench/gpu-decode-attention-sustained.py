# Decode-attention launches that might draw less power, timed inside the whole decode step at the power limit: the
# burst's decode steps run power-limited (docs/benchmarks.md, sixteenth session), so an attention launch that reads
# as fast but spends less energy could leave the step's GEMMs more clock. Batch 256 (--batches), contexts 520 / 640 /
# 768, bf16 cache; the step (forward + greedy) as one CUDA graph per launch (bench/decode_graph_ab.py), each replayed
# back to back for --secs seconds, --rounds rounds in rotating order (median ms, SM clock, board power).
#   python3 bench/gpu-decode-attention-sustained.py [--secs 2] [--rounds 3] [--batches 256] [--contexts 520,640,768]
#       [--variants shipped,2w,2w4s,1w]
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import decode_graph_ab  # noqa: E402  (puts python/ on the path)
from lmi_executor.kernels import paged_attention as pa  # noqa: E402

BASE = pa.decode_launch


def launch(**over):
    """decode_launch() with the one-program-per-(sequence, KV head) launch's parameters replaced."""
    def f(b, k, e=2, m=0):
        c = dict(BASE(b, k, e, m))
        if c["splits"] == 1:
            c.update(over)
        return c
    return f


def apply(f):
    pa.decode_launch = f


ap = argparse.ArgumentParser()
ap.add_argument("--secs", type=float, default=2.0)
ap.add_argument("--contexts", default="520,640,768")
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--batches", default="256")
ap.add_argument("--variants", default="shipped,2w,2w4s,1w", help="of: shipped, 2w, 2w4s, 1w, again (shipped)")
a = ap.parse_args()
VARIANTS = {"shipped": ("shipped launch", {}), "2w": ("2 warps, 64 keys, 3 stages", {"num_warps": 2}),
            "2w4s": ("2 warps, 64, 4", {"num_warps": 2, "num_stages": 4}),
            "1w": ("1 warp, 32, 5", {"num_warps": 1, "block_n": 32, "num_stages": 5}),
            "4w": ("4 warps, 64, 3", {"num_warps": 4, "num_stages": 3}), "again": ("shipped again", {})}
decode_graph_ab.run([(VARIANTS[v][0], launch(**VARIANTS[v][1])) for v in a.variants.split(",")],
                    apply, lambda: apply(BASE), tuple(int(b) for b in a.batches.split(",")),
                    tuple(int(c) for c in a.contexts.split(",")), "auto", sustained=a.secs, rounds=a.rounds)
