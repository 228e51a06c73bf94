# A decode step's gate/up projection with SiLU-and-mul fused into our GEMM (kernels/decode_gemm.py) against the
# cuBLASLt GEMM followed by silu_and_mul, in the whole decode step's graph (bench/decode_graph_ab.py: the
# Llama-3-8B-shaped model, forward + greedy) at the burst's batch, 256 (the only bucket the kernel serves).
# "diff" is each variant's logits against the first's (relative norm; the two paths round differently).
#   python3 bench/gpu-decode-swiglu-ab.py [--secs 2] [--rounds 3] [--contexts 520,640,768]
# --secs 0: interleaved short rounds instead of each graph replayed alone at the power limit.
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import decode_graph_ab  # noqa: E402  (puts python/ on the path)
from lmi_executor.kernels import decode_gemm  # noqa: E402


def apply(active):
    decode_gemm.ACTIVE = active


def restore():
    decode_gemm.ACTIVE = True


ap = argparse.ArgumentParser()
ap.add_argument("--secs", type=float, default=2.0)
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--contexts", default="520,640,768")
a = ap.parse_args()
print("decode GEMM:", "on" if decode_gemm.get() is not None else decode_gemm.status(), flush=True)
decode_graph_ab.run([("fused", True), ("unfused", False), ("fused again", True)], apply, restore, (256,),
                    tuple(int(c) for c in a.contexts.split(",")), sustained=a.secs, rounds=a.rounds)
