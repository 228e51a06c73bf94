# Accuracy of the executor's dtypes against the transformers fp32 goldens on the committed zoo models:
# for fp32, bf16 (CUDA only) and weight-only int8, the top-1 agreement at every golden position, the mean
# and max |delta logprob| of the golden next tokens, and greedy continuations' token agreement.
# Usage: python3 bench/gpu-int8-accuracy.py [--device cuda|cpu] [--json-out FILE]
import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "python"), os.path.join(HERE, "..", "python", "tests")]

from lmi_executor.config import SUPPORTED_ARCHITECTURES  # noqa: E402
from test_executor_model import Driver, make_worker, sampling  # noqa: E402


def evaluate(model_dir: str, device: str, dtype: str) -> dict:
    with open(os.path.join(model_dir, "golden.json")) as f:
        cases = json.load(f)["cases"]
    w = make_worker(model_dir, num_blocks=256, device=device, dtype=dtype, block_size=16, enable_cuda_graph=False)
    drv = Driver(w)
    top1 = total = 0
    deltas, greedy_same, greedy_total = [], 0, 0
    for i, c in enumerate(cases):
        ids = c["input_ids"]
        out = drv.run(new=[(f"a{i}", ids, len(ids), sampling(promptLogprobs=True, numTopLogprobs=1))])
        plp, first = out["promptLogprobs"][f"a{i}"], out["logprobs"][f"a{i}"][0]
        for e in c["logsoftmax"]:
            p, vals = e["position"], e["values"]
            ours = plp[p + 1] if p + 1 < len(ids) else first
            target = ids[p + 1] if p + 1 < len(ids) else c["greedy"]["ids"][0]
            deltas.append(abs(ours["logprob"] - vals[target]))
            top1 += int(ours["top"][0][0] == max(range(len(vals)), key=vals.__getitem__))
            total += 1
        drv.run(finished=[f"a{i}"])
        n = len(c["greedy"]["ids"])
        got, _ = drv.generate(f"g{i}", ids, n)
        drv.run(finished=[f"g{i}"])
        greedy_same += sum(int(a == b) for a, b in zip(got, c["greedy"]["ids"]))
        greedy_total += n
    return {"top1Agreement": top1 / total, "meanAbsDeltaLogprob": sum(deltas) / len(deltas),
            "maxAbsDeltaLogprob": max(deltas), "greedyTokenAgreement": greedy_same / greedy_total}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json-out", default="")
    a = ap.parse_args()
    zoo = os.path.join(HERE, "..", "models", "zoo")
    dtypes = ["fp32", "bf16", "int8"] if a.device == "cuda" else ["fp32", "int8"]
    res = {}
    for name in sorted(os.listdir(zoo)):
        d = os.path.join(zoo, name)
        if not os.path.exists(os.path.join(d, "golden.json")):
            continue
        with open(os.path.join(d, "config.json")) as f:
            if json.load(f)["architectures"][0] not in SUPPORTED_ARCHITECTURES:
                continue
        res[name] = {dt: evaluate(d, a.device, dt) for dt in dtypes}
    print("| model | dtype | top-1 agreement | mean abs d-logprob | max abs d-logprob | greedy token agreement |")
    print("|---|---|---|---|---|---|")
    for name, r in res.items():
        for dt, m in r.items():
            print(f"| {name} | {dt} | {m['top1Agreement']:.3f} | {m['meanAbsDeltaLogprob']:.2e} | "
                  f"{m['maxAbsDeltaLogprob']:.2e} | {m['greedyTokenAgreement']:.3f} |")
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
