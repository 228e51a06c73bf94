# Split-decode key tiles at small batches and long contexts: decode_launch()'s launch with 64-key tiles against the
# same with 32-key tiles, at batches 1-16 and contexts 1,024-4,000, in the whole decode step's graph
# (bench/decode_graph_ab.py). "diff": another summation order through 32 layers of random weights, a few % over
# an fp8 cache.
#   python3 bench/gpu-decode-tiles-ab.py [fp8|auto]      (the KV cache dtype; default fp8)
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import decode_graph_ab  # noqa: E402  (puts python/ on the path)
from lmi_executor.kernels import paged_attention as pa  # noqa: E402

BASE = pa.decode_launch


def tiles(n):
    """decode_launch() with n-key tiles for split launches (one program per sequence and KV head: unchanged)."""
    def launch(b, k, e=2, m=0):
        c = dict(BASE(b, k, e, m))
        if c["splits"] > 1:
            c["block_n"] = n
        return c
    return launch


def apply(launch):
    pa.decode_launch = launch


decode_graph_ab.run([("64-key tiles", tiles(64)), ("32-key tiles", tiles(32)), ("64-key again", tiles(64))],
                    apply, lambda: apply(BASE), (1, 2, 4, 8, 16), (1024, 2048, 4000),
                    sys.argv[1] if len(sys.argv) > 1 else "fp8")
