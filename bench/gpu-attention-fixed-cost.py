# What a decode attention call costs beyond streaming its KV, at the burst's batch sizes: CUDA graphs of 1, 2 and 4
# calls of kernels/paged_attention.py over disjoint inputs (Llama-3-8B attention shape, bf16 cache, 16-token pages
# drawn at random), replayed in interleaved rounds. The marginal time per call ((4 calls - 2 calls) / 2) is the
# streaming part; one call minus it is the per-call fixed cost (launch, ramp, tail).
#   python3 bench/gpu-attention-fixed-cost.py [--cases 256x640,128x640,512x640,256x2048]
import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, HERE)

from bench_scripts import load_script  # noqa: E402
from gpu_timing import graph_of, interleaved_rounds  # noqa: E402
from lmi_executor.kernels import paged_attention as pa  # noqa: E402

_sweep = load_script("gpu-attention-fp8-sweep.py")
SCALE = 128**-0.5


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="256x640,128x640,512x640,256x2048")
    for case in ap.parse_args().cases.split(","):
        B, ctx = (int(x) for x in case.split("x"))
        sets = []
        for seed in range(4):
            q, k, v, table = _sweep.inputs(B, ctx, 1, torch.bfloat16, seed=seed)
            sets.append((q, k, v, _sweep.metadata(B, ctx, 1, table)))
        graphs = {n: graph_of([lambda s=s: pa.paged_attention(s[0], s[1], s[2], s[3], SCALE) for s in sets[:n]])
                  for n in (1, 2, 4)}
        t = {n: xs[len(xs) // 2] * 1000 for n, xs in interleaved_rounds(graphs, rounds=5, replays=20).items()}
        kv = 2 * B * ctx * _sweep.KVH * _sweep.HD * 2
        marginal = (t[4] - t[2]) / 2
        print(f"batch {B} x {ctx}: one call {t[1]:.1f} us ({kv / t[1] / 1e6:.2f} TB/s), two {t[2]:.1f}, four {t[4]:.1f}; "
              f"per call beyond the first two {marginal:.1f} us ({kv / marginal / 1e6:.2f} TB/s), fixed cost "
              f"{t[1] - marginal:.1f} us", flush=True)
        del graphs, sets


if __name__ == "__main__":
    main()
