# Where a step's time goes on the GPU, for the Llama-3-8B-shaped dummy model: for decode at batch 1 and
# batch B (after 512-token prompts) and for one 8192-token prefill step, it reports execute() wall time,
# CUDA-graph replay time alone (events), and the eager step's kernels grouped by name (torch.profiler).
import argparse
import json
import os
import sys

import torch
from torch.profiler import ProfilerActivity, profile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, HERE)
from bench_scripts import load_script  # noqa: E402

bench = load_script("gpu-executor-bench.py")

from lmi_executor.config import ExecutorOptions  # noqa: E402
from lmi_executor.graph_capture import bucket_for  # noqa: E402
from lmi_executor.worker import Worker  # noqa: E402


class Harness:
    def __init__(self, w, bs=16):
        self.w, self.bs, self.step, self.next_block = w, bs, 0, 0
        self.reqs = {}

    def plan(self, new=(), run=(), finished=()):
        self.step += 1
        p = {"stepId": self.step, "scheduledNewReqs": [], "scheduledCachedReqs": [], "numScheduledTokens": {},
             "totalNumScheduledTokens": 0, "finishedReqIds": list(finished), "preemptedReqIds": []}
        for rid, prompt in new:
            nb = (len(prompt) + 600 + self.bs - 1) // self.bs  # room for 600 generated tokens up front
            blocks = list(range(self.next_block, self.next_block + nb))
            self.next_block += nb
            self.reqs[rid] = {"computed": 0, "known": len(prompt)}
            p["scheduledNewReqs"].append({"reqId": rid, "promptTokenIds": prompt, "sampling": bench.GREEDY,
                                          "blockIds": blocks, "numComputedTokens": 0})
            p["numScheduledTokens"][rid] = len(prompt)
        for rid in run:
            r = self.reqs[rid]
            p["scheduledCachedReqs"].append({"reqId": rid, "newBlockIds": [], "numComputedTokens": r["computed"],
                                             "resumedFromPreemption": False})
            p["numScheduledTokens"][rid] = r["known"] - r["computed"]
        p["totalNumScheduledTokens"] = sum(p["numScheduledTokens"].values())
        return p

    def execute(self, p):
        out = self.w.execute({"plan": p})
        for rid, n in p["numScheduledTokens"].items():
            self.reqs[rid]["computed"] += n
        for rid in out["sampledTokenIds"]:
            self.reqs[rid]["known"] += 1
        return out


def timed(fn, n):
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
    for a, b in ev:
        a.record()
        fn()
        b.record()
    torch.cuda.synchronize()
    xs = sorted(a.elapsed_time(b) for a, b in ev)
    return xs[len(xs) // 2]


def kernel_table(fn, rows=14):
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    ka = prof.key_averages()
    key = "device_time_total" if hasattr(ka[0], "device_time_total") else "cuda_time_total"
    total = sum(getattr(e, key) for e in ka) / 1000
    lines = [f"  total kernel time {total:.3f} ms, {sum(e.count for e in ka)} kernels"]
    for e in sorted(ka, key=lambda e: -getattr(e, key))[:rows]:
        lines.append(f"  {getattr(e, key) / 1000:8.3f} ms  x{e.count:<5d} {e.key[:90]}")
    return "\n".join(lines), total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--json-out", default="")
    args = ap.parse_args()
    w = Worker(ExecutorOptions(model_dir=bench.llama3_8b_dir(), device="cuda", dtype="bf16", load_format="dummy",
                               max_num_seqs=256, max_model_len=4096, max_num_batched_tokens=8192), 0, 1)
    w.load({})
    w.init_cache({"numBlocks": w.profile({})["numBlocks"]})
    runner = w.runner
    g = torch.Generator().manual_seed(0)
    res = {}
    for B in (1, args.batch):
        h = Harness(w)
        ids = [f"b{B}_{i}" for i in range(B)]
        for i in range(0, B, 16):
            h.execute(h.plan(new=[(rid, torch.randint(0, 128000, (512,), generator=g).tolist()) for rid in ids[i:i + 16]]))
        for _ in range(3):
            h.execute(h.plan(run=ids))
        import time

        walls = []
        for _ in range(15):
            t = time.perf_counter()
            h.execute(h.plan(run=ids))
            walls.append((time.perf_counter() - t) * 1000)
        size = bucket_for(runner.graphs.sizes, B)
        sts = [runner.store.running[r] for r in ids]
        key = runner.graphs.key(size, max(len(st.token_ids) for st in sts))
        replay = timed(lambda: runner.graphs.graphs[key].replay(), 20)

        def eager():
            runner._forward_eager([st.token_ids[-1] for st in sts], [1] * B, [len(st.token_ids) - 1 for st in sts],
                                  [len(st.token_ids) for st in sts], [st.row for st in sts], list(range(B)))

        # The eager call writes the K/V of each request's last token again, with the same values: harmless.
        table, total = kernel_table(eager)
        res[f"decode_b{B}"] = {"executeMsMedian": sorted(walls)[7], "graphReplayMs": replay, "eagerKernelMs": total}
        print(f"decode batch {B}: execute() {sorted(walls)[7]:.3f} ms, graph replay {replay:.3f} ms, eager kernels:")
        print(table)
        h.execute(h.plan(finished=ids))
    # One 8192-token prefill step: 16 prompts of 512.
    h = Harness(w)
    prompts = [(f"p{i}", torch.randint(0, 128000, (512,), generator=g).tolist()) for i in range(16)]
    state = {"n": 0}

    def prefill():
        state["n"] += 1
        ps = [(f"{rid}_{state['n']}", p) for rid, p in prompts]
        h.execute(h.plan(new=ps))
        h.execute(h.plan(finished=[rid for rid, _ in ps]))
        h.next_block = 0

    table, total = kernel_table(prefill)
    ms = timed(prefill, 5)
    res["prefill_8192"] = {"stepMs": ms, "kernelMs": total, "tflops": 2 * 7.5e9 * 8192 / (ms / 1000) / 1e12}
    print(f"prefill 16x512: step {ms:.2f} ms, kernels {total:.2f} ms:")
    print(table)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(res, f, indent=1)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
