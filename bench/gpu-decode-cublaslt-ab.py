# The tuned cuBLASLt GEMMs (kernels/lt_gemm.py, the card's tuning table) against F.linear for every projection, in
# the whole decode step's graph (bench/decode_graph_ab.py) at batches that take the general path (more than 8
# rows). The diff column compares logits (a tuned algorithm sums in another order: bf16 rounding differences).
#   python3 bench/gpu-decode-cublaslt-ab.py [--batches 16,24,32,48] [--ctx 640] [auto|fp8]
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import decode_graph_ab  # noqa: E402  (puts python/ on the path)
from lmi_executor.kernels import lt_gemm  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--batches", default="16,24,32,48")
ap.add_argument("--ctx", default="640")
ap.add_argument("kv", nargs="?", default="auto")
args = ap.parse_args()
TUNED = lt_gemm.get()
print("tuned cuBLASLt GEMMs:", lt_gemm.status(), flush=True)


def apply(on):
    lt_gemm._STATE["gemm"] = TUNED if on else None


decode_graph_ab.run([("F.linear", False), ("tuned table", True), ("F.linear again", False)], apply,
                    lambda: apply(True), [int(b) for b in args.batches.split(",")],
                    [int(c) for c in args.ctx.split(",")], args.kv)
