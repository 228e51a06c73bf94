# Accuracy of the executor's dtypes against the transformers fp32 goldens on the committed zoo models (the
# Llama family: weight-only quantization covers those): for fp32, bf16 (CUDA only), weight-only int8 and
# int4 (asymmetric, the executor's choice) and, for comparison, symmetric int4 (same storage and kernels,
# quantized here with quantize_int4(symmetric=True)): the top-1 agreement at every golden position, the mean
# and max |delta logprob| of the golden next tokens, and greedy continuations' token agreement; then, with
# many more positions, prompt + golden continuation teacher-forced, against this script's own fp32 run.
# Usage: python3 bench/gpu-quant-accuracy.py [--device cuda|cpu] [--dtypes fp32,int8,...] [--json-out FILE]
# (bench/gpu-int8-accuracy.py is the same script under its old name.)
import argparse
import json
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "python"), os.path.join(HERE, "..", "python", "tests")]

from lmi_executor.config import SUPPORTED_ARCHITECTURES  # noqa: E402
from lmi_executor.quant import quantize_int4  # noqa: E402
from test_executor_model import Driver, make_worker, sampling  # noqa: E402

QUANTIZABLE = [a for a, t in SUPPORTED_ARCHITECTURES.items() if t not in ("gpt2", "gpt_neox")]
PROJECTIONS = ("qkv_w", "o_w", "gate_up_w", "down_w")


def build(model_dir: str, device: str, dtype: str):
    if dtype != "int4-sym":
        return make_worker(model_dir, num_blocks=256, device=device, dtype=dtype, block_size=16, enable_cuda_graph=False)
    w = make_worker(model_dir, num_blocks=256, device=device, dtype="bf16" if device == "cuda" else "fp32",
                    block_size=16, enable_cuda_graph=False)
    for L in w.model.layers:
        for k in [k for k in L if k in PROJECTIONS or k.startswith("expert")]:
            L[k] = quantize_int4(L[k], symmetric=True)
    return w


def evaluate(model_dir: str, device: str, dtype: str) -> dict:
    with open(os.path.join(model_dir, "golden.json")) as f:
        cases = json.load(f)["cases"]
    drv = Driver(build(model_dir, device, dtype))
    top1 = total = 0
    deltas, greedy_same, greedy_total, forced = [], 0, 0, []
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
        # Teacher-forced: prompt + the golden greedy continuation as one prompt; every position's logprob of
        # the next token and top-1 (compared with this script's fp32 run: ~50 positions per case, not 3).
        full = ids + c["greedy"]["ids"]
        out = drv.run(new=[(f"t{i}", full, len(full), sampling(promptLogprobs=True, numTopLogprobs=1))])
        forced += [(e["logprob"], e["top"][0][0]) for e in out["promptLogprobs"][f"t{i}"][1:]]
        drv.run(finished=[f"t{i}"])
    return {"top1Agreement": top1 / total, "meanAbsDeltaLogprob": sum(deltas) / len(deltas),
            "maxAbsDeltaLogprob": max(deltas), "greedyTokenAgreement": greedy_same / greedy_total, "forced": forced}


def versus(ref: list, got: list) -> dict:
    d = [abs(a[0] - b[0]) for a, b in zip(ref, got)]
    return {"positions": len(d), "top1AgreementVsFp32": sum(int(a[1] == b[1]) for a, b in zip(ref, got)) / len(d),
            "meanAbsDeltaLogprobVsFp32": sum(d) / len(d)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtypes", default="", help="comma-separated; default fp32,bf16,int8,int4,int4-sym "
                                                 "(no bf16 on the CPU)")
    ap.add_argument("--json-out", default="")
    a = ap.parse_args()
    zoo = os.path.join(HERE, "..", "models", "zoo")
    dtypes = a.dtypes.split(",") if a.dtypes else (
        ["fp32", "bf16", "int8", "int4", "int4-sym"] if a.device == "cuda" else ["fp32", "int8", "int4", "int4-sym"])
    res = {}
    t0 = time.perf_counter()
    for name in sorted(os.listdir(zoo)):
        d = os.path.join(zoo, name)
        if not os.path.exists(os.path.join(d, "golden.json")):
            continue
        with open(os.path.join(d, "config.json")) as f:
            if json.load(f)["architectures"][0] not in QUANTIZABLE:
                continue
        res[name] = {dt: evaluate(d, a.device, dt) for dt in dtypes}
        if "fp32" in res[name]:
            ref = res[name]["fp32"]["forced"]
            for m in res[name].values():
                m.update(versus(ref, m["forced"]))
        for m in res[name].values():
            del m["forced"]
    print(f"device {a.device}, {time.perf_counter() - t0:.0f} s")
    print("| model | dtype | top-1 agreement | mean abs d-logprob | max abs d-logprob | greedy token agreement "
          "| forced: top-1 vs fp32 | forced: mean abs d-logprob vs fp32 |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in res.items():
        for dt, m in r.items():
            print(f"| {name} | {dt} | {m['top1Agreement']:.3f} | {m['meanAbsDeltaLogprob']:.2e} | "
                  f"{m['maxAbsDeltaLogprob']:.2e} | {m['greedyTokenAgreement']:.3f} | "
                  f"{m.get('top1AgreementVsFp32', float('nan')):.3f} | {m.get('meanAbsDeltaLogprobVsFp32', float('nan')):.2e} |")
    means = {}
    for r in res.values():
        for dt, m in r.items():
            if "meanAbsDeltaLogprobVsFp32" in m:
                means.setdefault(dt, []).append((m["top1AgreementVsFp32"], m["meanAbsDeltaLogprobVsFp32"]))
    for dt, v in means.items():
        print(f"| all | {dt} | | | | | {sum(x[0] for x in v) / len(v):.3f} | {sum(x[1] for x in v) / len(v):.2e} |")
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
