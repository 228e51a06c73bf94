# What sampling costs on the GPU outside the decode graph: sampler.sample_on_device for one step's rows (bf16
# logits, passed as the runner of the sampler's version passes a decode graph's output) at several batch sizes,
# for greedy with penalties, seeded temperature / top-p / top-k draws, greedy with the log_softmax that 5 logprob
# alternatives are taken from (the runner's top-k after it not included), and the pieces of a draw (the stable
# descending sort).
# Eager launches timed with CUDA events over many calls (sampling runs eagerly in serving too), median of rounds.
# Usage (GPU machine): python3 bench/gpu-sampler-bench.py [--rows 1,64,256] [--vocab 128256] [--json-out F]
import argparse
import inspect
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from lmi_executor.sampler import SampleRow, sample_on_device  # noqa: E402

_BASE = {"strategy": "greedy", "temperature": 1.0, "topK": 0, "topP": 1.0, "typicalP": 1.0, "minP": 0.0,
         "repetitionPenalty": 1.0, "presencePenalty": 0.0, "frequencyPenalty": 0.0, "logitBias": {}, "seed": 0,
         "penaltyAlpha": 0.0, "numTopLogprobs": 0, "promptLogprobs": False, "minTokens": 0, "eosTokenIds": [2],
         "ignoreEos": False}
CASES = {
    "greedy": {},
    "penalties": {"repetitionPenalty": 1.1, "presencePenalty": 0.2},
    "temperature": {"strategy": "sample", "temperature": 0.8},
    "top_p": {"strategy": "sample", "temperature": 0.8, "topP": 0.95},
    "top_k": {"strategy": "sample", "temperature": 0.8, "topK": 50},
    "logprobs5": {"numTopLogprobs": 5},
}


def timed(fn, iters: int = 20, rounds: int = 5) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    ms = []
    for _ in range(rounds):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(iters):
            fn()
        b.record()
        b.synchronize()
        ms.append(a.elapsed_time(b) / iters)
    return sorted(ms)[len(ms) // 2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="1,64,256")
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--context", type=int, default=640, help="earlier tokens per row (penalties)")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--json-out")
    args = ap.parse_args()
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(0)
    res = {"device": torch.cuda.get_device_name(), "vocab": args.vocab, "ms": {}}
    print(f"| rows | {' | '.join(args.cases.split(','))} | sort (stable, desc) | sort | softmax + cumsum | "
          "int64 key sort | topk 50 | int64 key topk 50 |")
    print("|---" * (len(args.cases.split(",")) + 7) + "|")
    for R in (int(r) for r in args.rows.split(",")):
        logits = (torch.randn(R, args.vocab, device=dev, generator=g) * 3).to(torch.bfloat16)
        hist = torch.randint(0, args.vocab, (R + 1, args.context + 1), device=dev, generator=g, dtype=torch.int32)
        row_ms = {}
        # What the runner passes: the decode graph's 16-bit logits as they are (since the sampler widens them only
        # where needed), before that widened with the 16-bit ones as sort keys, before those fp32 alone.
        if "widened to fp32 here only" in " ".join((sample_on_device.__doc__ or "").split()):
            def call(rows, k):
                return sample_on_device(logits, rows, k, hist=hist)
        elif "keys" in inspect.signature(sample_on_device).parameters:
            def call(rows, k):
                return sample_on_device(logits.float(), rows, k, hist=hist, keys=logits)
        else:
            def call(rows, k):
                return sample_on_device(logits.float(), rows, k, hist=hist)
        for name in args.cases.split(","):
            s = {**_BASE, **CASES[name]}
            rows = [SampleRow({**s, "seed": i}, 128, [], args.context - 128, i) for i in range(R)]
            k = s["numTopLogprobs"]
            row_ms[name] = timed(lambda: call(rows, k))
        x = logits.float()
        row_ms["sort_stable_desc"] = timed(lambda: x.sort(dim=-1, descending=True, stable=True))
        row_ms["sort"] = timed(lambda: x.sort(dim=-1, descending=True))
        row_ms["softmax_cumsum"] = timed(lambda: x.softmax(-1).cumsum(-1))
        # Unique 64-bit keys (orderable float bits, then the id reversed: ties go to the lower id) sort without
        # a payload and without stability.
        ids = torch.arange(args.vocab, device=dev)

        def keys():
            b = x.view(torch.int32).long()
            b = torch.where(b < 0, b ^ 0x7FFFFFFF, b)
            return (b << 32) | (args.vocab - 1 - ids)

        row_ms["keys_sort"] = timed(lambda: keys().sort(dim=-1, descending=True))
        row_ms["topk50"] = timed(lambda: x.topk(50, dim=-1))
        row_ms["keys_topk50"] = timed(lambda: keys().topk(50, dim=-1))
        res["ms"][R] = row_ms
        print(f"| {R} | " + " | ".join(f"{v:.3f}" for v in row_ms.values()) + " |")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
