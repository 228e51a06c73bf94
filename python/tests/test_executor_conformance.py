# The executor against the committed goldens (models/zoo/*, models/tiny-kjv: transformers fp32 outputs):
# prompt and last-position logprobs within tolerance, top-1 equal, greedy continuations token-exact alone
# and batched with chunked prefill, in fp32; on a GPU also with CUDA graphs on and off. Runs on the CPU
# reference path in CI and on the Triton path on the GPU machine. Unsupported architectures are listed.
import json
import os
import sys
import unittest

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

from lmi_executor.config import SUPPORTED_ARCHITECTURES  # noqa: E402
from test_executor_model import Driver, make_worker, sampling  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models")
CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
# fp32 everywhere; on the GPU the matmuls may use TF32-free cuBLAS fp32 but reduce in another order.
TOL = 1e-3 if CUDA else 2e-4


def model_dirs():
    out = [os.path.join(ROOT, "tiny-kjv")]
    zoo = os.path.join(ROOT, "zoo")
    if os.path.isdir(zoo):
        out += [os.path.join(zoo, d) for d in sorted(os.listdir(zoo))]
    return out


def load_golden(d):
    cfg_p, gold_p = os.path.join(d, "config.json"), os.path.join(d, "golden.json")
    if not (os.path.exists(cfg_p) and os.path.exists(gold_p)):
        return None, None
    with open(cfg_p) as f:
        cfg = json.load(f)
    with open(gold_p) as f:
        return cfg, json.load(f)


def worker_for(d, graphs=False):
    over = {"device": DEVICE, "dtype": "fp32", "enable_cuda_graph": graphs}
    if CUDA:
        torch.backends.cuda.matmul.allow_tf32 = False
        over["block_size"] = 16
    return make_worker(d, num_blocks=256, **over)


class GoldenConformance(unittest.TestCase):
    def test_every_supported_model_matches_its_golden(self):
        ran, skipped = [], []
        for d in model_dirs():
            cfg, gold = load_golden(d)
            name = os.path.relpath(d, ROOT)
            if cfg is None:
                skipped.append(f"{name}: no config.json/golden.json")
                continue
            arch = (cfg.get("architectures") or ["?"])[0]
            if arch not in SUPPORTED_ARCHITECTURES:
                skipped.append(f"{name}: {arch} not supported")
                continue
            with self.subTest(model=name):
                self.check_model(d, gold)
                ran.append(name)
        sys.stderr.write(f"\n[conformance on {DEVICE}] ran: {', '.join(ran)}; skipped: {'; '.join(skipped)}\n")
        self.assertTrue(ran or not os.path.isdir(os.path.join(ROOT, "zoo")), "no zoo model ran")

    def check_model(self, d, gold):
        cases = gold["cases"]
        w = worker_for(d)
        drv = Driver(w)
        for i, c in enumerate(cases):
            s = sampling(promptLogprobs=True, numTopLogprobs=20)
            out = drv.run(new=[(f"lp{i}", c["input_ids"], len(c["input_ids"]), s)])
            plp, first = out["promptLogprobs"][f"lp{i}"], out["logprobs"][f"lp{i}"][0]
            self.assertEqual(first["top"][0][0], c["last_top20"]["ids"][0], f"case {i} top-1")
            for entry in c["logsoftmax"]:
                p, vals = entry["position"], entry["values"]
                ours = plp[p + 1] if p + 1 < len(c["input_ids"]) else first
                target = c["input_ids"][p + 1] if p + 1 < len(c["input_ids"]) else c["greedy"]["ids"][0]
                self.assertLess(abs(ours["logprob"] - vals[target]), TOL, f"case {i} position {p}")
                for tid, lp in ours["top"]:
                    self.assertLess(abs(lp - vals[tid]), TOL, f"case {i} position {p} token {tid}")
            drv.run(finished=[f"lp{i}"])
        for i, c in enumerate(cases):
            # A golden stops early at EOS; the executor never stops on its own, so compare that many tokens.
            toks, _ = Driver(worker_for(d) if i == 0 else w).generate(f"g{i}", c["input_ids"], len(c["greedy"]["ids"]))
            self.assertEqual(toks, c["greedy"]["ids"], f"case {i} greedy alone")
        for graphs in ([False, True] if CUDA else [False]):
            drv = Driver(worker_for(d, graphs=graphs), seed=1)
            want = {f"b{i}": c for i, c in enumerate(cases)}
            drv.run(new=[(rid, c["input_ids"], min(5, len(c["input_ids"])), sampling()) for rid, c in want.items()])
            for _ in range(200):
                active = [rid for rid, c in want.items()
                          if len(drv.reqs[rid]["tokens"]) < len(c["input_ids"]) + len(c["greedy"]["ids"])]
                if not active:
                    break
                runs = []
                for rid in active:
                    r = drv.reqs[rid]
                    runs.append((rid, min(5, len(r["tokens"]) - r["computed"])))
                drv.run(cached=runs)
            for rid, c in want.items():
                got = drv.reqs[rid]["tokens"][len(c["input_ids"]):]
                self.assertEqual(got, c["greedy"]["ids"], f"{rid} batched, chunked prefill, graphs={graphs}")


if __name__ == "__main__":
    unittest.main()
