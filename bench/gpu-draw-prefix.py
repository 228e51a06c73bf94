# The sampler's draw over a sorted prefix (steps whose rows all have top-k: sampler.sorted_prefix) against the
# whole-row sort, for a decode step's logits (Llama-3 vocabulary, 128,256, bf16): GPU time of sampler._draw_kernel
# (it copies its settings to the device, so it is not graph-captured): --calls calls queued behind a GPU sleep, so
# the events around them time the GPU's work and not the host's launches; --rounds rounds, the forms alternating,
# median per form.
#   python3 bench/gpu-draw-prefix.py [--rows 16,64,256] [--calls 20]
import argparse
import os
import statistics
import sys
from unittest import mock

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from lmi_executor import sampler  # noqa: E402
from lmi_executor.sampler import SampleRow, _draw_kernel  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="16,64,256")
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sleep-cycles", type=int, default=60_000_000)
    args = ap.parse_args()
    V = 128256
    settings = {"top_k 50": dict(topK=50), "top_k 50, top_p 0.9": dict(topK=50, topP=0.9),
                "top_k 1000, top_p 0.95, min_p 0.02": dict(topK=1000, topP=0.95, minP=0.02)}
    base = {"strategy": "sample", "temperature": 0.8, "topK": 0, "topP": 1.0, "minP": 0.0, "typicalP": 1.0,
            "seed": 0}
    sampler.warm_draw_kernels(V, torch.bfloat16, "cuda")
    for R in (int(r) for r in args.rows.split(",")):
        keys = (torch.randn((R, V), device="cuda") * 3).to(torch.bfloat16)
        for name, st in settings.items():
            rows = [SampleRow({**base, **st, "seed": j}, 0, [], 0) for j in range(R)]
            times = {"whole sort": [], "prefix": []}
            for rnd in range(args.rounds):
                for form in ("whole sort", "prefix") if rnd % 2 else ("prefix", "whole sort"):
                    limit = (1 << 30) if form == "whole sort" else sampler.PREFIX_MIN_ROWS
                    with mock.patch.object(sampler, "PREFIX_MIN_ROWS", limit):
                        _draw_kernel(keys, rows)  # warm
                        torch.cuda.synchronize()
                        # The GPU sleeps while the host queues every call, so the events time the GPU's work only.
                        torch.cuda._sleep(args.sleep_cycles)
                        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                        a.record()
                        for _ in range(args.calls):
                            _draw_kernel(keys, rows)
                        b.record()
                        torch.cuda.synchronize()
                    times[form].append(a.elapsed_time(b) / args.calls)
            print(f"{R} rows, {name}: " + ", ".join(f"{f} {statistics.median(t):.3f} ms" for f, t in times.items()),
                  flush=True)


if __name__ == "__main__":
    main()
