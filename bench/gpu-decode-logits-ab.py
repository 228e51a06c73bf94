# The decode graph's logits left in the LM head's bf16 (greedy widens them as it loads: what
# cuda_graphs.DecodeGraphs captures since this change) against widening them to fp32 inside the graph (before),
# in the whole decode step's graph (bench/decode_graph_ab.py) at the burst's batches. Widening is exact: every
# diff is 0. Batches of at most 8 rows are not affected (their one-row kernels write fp32 logits themselves).
#   python3 bench/gpu-decode-logits-ab.py [auto|fp8]      (the KV cache dtype; default auto)
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import decode_graph_ab  # noqa: E402  (puts python/ on the path)
from lmi_executor.models.llama import LlamaModel  # noqa: E402

FORWARD = LlamaModel.forward


def apply(widen):
    LlamaModel.forward = lambda m, *a, widen=True, _w=widen: FORWARD(m, *a, widen=_w)


def restore():
    LlamaModel.forward = FORWARD


decode_graph_ab.run([("fp32 in the graph (before)", True), ("bf16 logits", False), ("fp32 again", True)],
                    apply, restore, (64, 256), (640,), sys.argv[1] if len(sys.argv) > 1 else "auto")
