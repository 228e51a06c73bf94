# The small-step GEMVs' weight loads with the L2 policy evict_first (kernels/gemv.py FLAGS["w_evict"], the default)
# against the default policy, at batches 1-8 and contexts 128-2,048, in the whole decode step's graph
# (bench/decode_graph_ab.py). A cache policy changes no result: every diff is 0.
#   python3 bench/gpu-decode-evict-ab.py [auto|fp8]      (the KV cache dtype; default auto)
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import decode_graph_ab  # noqa: E402  (puts python/ on the path)
from lmi_executor.kernels import gemv  # noqa: E402


def apply(policy):
    gemv.FLAGS["w_evict"] = policy


decode_graph_ab.run([("evict_first", "evict_first"), ("default policy", ""), ("evict_first again", "evict_first")],
                    apply, lambda: apply("evict_first"), (1, 2, 4, 8), (128, 512, 2048),
                    sys.argv[1] if len(sys.argv) > 1 else "auto")
