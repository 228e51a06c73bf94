# Decode steps with the rotary embedding and the K/V-cache write inside the attention kernel
# (attention.FLAGS["rope_in_decode"], the default: kernels/paged_attention.decode_attention_rope) against the separate
# rotary kernel (fused.rope_and_cache) + paged_attention, in the whole decode step's graph (bench/decode_graph_ab.py)
# at the general forward's batches (9-256 rows; batch 1-8 steps take kernels/gemv.py's own fused rotary). "diff" is
# each variant's logits against the first's.
#   python3 bench/gpu-decode-rope-ab.py [auto|fp8]      (the KV cache dtype; default auto)
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import decode_graph_ab  # noqa: E402  (puts python/ on the path)
from lmi_executor import attention  # noqa: E402


def apply(on):
    attention.FLAGS["rope_in_decode"] = on


decode_graph_ab.run([("rope in attention", True), ("separate rotary", False), ("rope in attention again", True)],
                    apply, lambda: apply(True), (16, 64, 256), (520, 768),
                    sys.argv[1] if len(sys.argv) > 1 else "auto")
