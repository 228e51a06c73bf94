# Where a step's time goes when steps are pipelined, on the GPU machine (in process, no Node):
#   copies   whether each kind of host-to-device copy the executor issues makes the host wait for the
#            GPU (a queued sleep in front: a copy that returns after the sleep blocked);
#   batch1   pipelined batch-1 decode through the runner (launch step N+1, then finish step N): wall ms
#            per step, the GPU's busy time and gaps per step (torch.profiler), and the decode graph's
#            replay alone at the same context;
#   prefill  one 512-token prompt on an idle executor: host launch ms, GPU ms, the launch's hottest
#            Python functions (cProfile), whether it replayed a prefill graph (LMI_PREFILL_GRAPHS=0: eager).
# Llama-3-8B shape, bf16, dummy weights. LMI_PYTHON_DIR=path runs another copy of python/ (A/B).
# Usage: python3 bench/gpu-step-anatomy.py [--steps 200] [--json-out F]
import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import time

import torch

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("LMI_PYTHON_DIR") or os.path.join(_HERE, "..", "python"))
sys.path.insert(0, _HERE)

from gpu_timing import replay_time  # noqa: E402
from lmi_executor.config import ExecutorOptions  # noqa: E402
from lmi_executor.worker import Worker  # noqa: E402

from bench_scripts import load_script  # noqa: E402

_eb = load_script("gpu-executor-bench.py")
GREEDY = _eb.GREEDY


def copies() -> dict:
    """Host milliseconds spent in each copy call while a ~30 ms GPU sleep is queued ahead of it."""
    dev = torch.device("cuda")
    pinned = torch.zeros((5, 256), dtype=torch.int64).pin_memory()
    flat = torch.zeros(5 * 256, dtype=torch.int64).pin_memory()
    dst = torch.zeros(5 * 256, dtype=torch.int64, device=dev)
    values = list(range(40))
    cases = {
        "pinned strided slice [5, 256][:, :1]": lambda: dst[:5].view(5, 1).copy_(pinned[:, :1], non_blocking=True),
        "pinned contiguous [5, 1]": lambda: dst[:5].view(5, 1).copy_(flat[:5].view(5, 1), non_blocking=True),
        "torch.tensor(list).to(non_blocking)": lambda: torch.tensor(values).to(dev, non_blocking=True),
        "torch.tensor(list).pin_memory().to(non_blocking)": lambda: torch.tensor(values).pin_memory().to(dev, non_blocking=True),
    }
    out = {}
    for name, fn in cases.items():
        fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(3):
            torch.cuda._sleep(50_000_000)
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
            torch.cuda.synchronize()
        out[name] = round(sorted(times)[1], 3)
    return out


class Pipeline:
    """Plans for one request decoding alone, launched one step ahead of finishing (as the engine does)."""

    def __init__(self, runner, prompt, first_block=0):
        self.r, self.prompt, self.step = runner, prompt, 0
        self.blocks = list(range(first_block, first_block + (len(prompt) + 15) // 16))
        self.next_block = self.blocks[-1] + 1
        self.computed = 0

    def _plan(self, new=(), cached=(), sched=None, finished=()):
        self.step += 1
        return {"stepId": self.step, "scheduledNewReqs": list(new), "scheduledCachedReqs": list(cached),
                "numScheduledTokens": sched or {}, "totalNumScheduledTokens": sum((sched or {}).values()),
                "finishedReqIds": list(finished), "preemptedReqIds": []}

    def first(self, rid):
        self.rid = rid
        self.computed = len(self.prompt)
        return self._plan(new=[{"reqId": rid, "promptTokenIds": self.prompt, "sampling": GREEDY,
                                "blockIds": list(self.blocks), "numComputedTokens": 0}], sched={rid: len(self.prompt)})

    def decode(self):
        """The next decode step: its one token is the previous step's (maybe still pending) sample."""
        nc = self.computed
        fresh = []
        if nc // 16 >= len(self.blocks):
            fresh = [self.next_block]
            self.blocks.append(self.next_block)
            self.next_block += 1
        self.computed += 1
        return self._plan(cached=[{"reqId": self.rid, "newBlockIds": fresh, "numComputedTokens": nc,
                                   "resumedFromPreemption": False}], sched={self.rid: 1})

    def end(self):
        return self._plan(finished=[self.rid])


def gpu_timeline(prof, steps: int) -> dict:
    """Kernel/copy intervals of the profiled window: busy time, span and the largest gaps, per step."""
    evs = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA and e.time_range.elapsed_us() >= 0]
    ivs = sorted((e.time_range.start, e.time_range.end, e.name) for e in evs)
    if not ivs:
        return {}
    busy, gaps, cur_end = 0.0, [], ivs[0][0]
    for s, e, name in ivs:
        if s > cur_end:
            gaps.append((s - cur_end, name))
        busy += max(0.0, e - max(s, cur_end))
        cur_end = max(cur_end, e)
    span = cur_end - ivs[0][0]
    gaps.sort(reverse=True)
    by_name = {}
    for s, e, name in ivs:
        t, c = by_name.get(name, (0.0, 0))
        by_name[name] = (t + e - s, c + 1)
    top = sorted(by_name.items(), key=lambda kv: -kv[1][0])
    return {"spanMsPerStep": span / 1e3 / steps, "busyMsPerStep": busy / 1e3 / steps,
            "gapMsPerStep": (span - busy) / 1e3 / steps, "ops": len(ivs),
            "largestGapsUs": [(round(g, 1), n[:60]) for g, n in gaps[:8]],
            "perStepUsByKernel": [(round(t / steps, 1), round(c / steps, 2), n[:70]) for n, (t, c) in top[:40]]}


def decode_walls(r, next_plan, steps: int, ahead: bool = True, profile_last: int = 0) -> tuple:
    """Runs `steps` plans from next_plan() after a first one: with `ahead`, each launched before the previous one
    is finished (as the engine pipelines steps), else one at a time; every step is finished before it returns.
    Returns (wall seconds between successive steps, the CUDA profiler of the last `profile_last` steps or None)."""
    prev = r.launch(next_plan())
    walls, prof, t_last = [], None, time.perf_counter()
    for k in range(steps):
        if profile_last and k == steps - profile_last:
            prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA])
            prof.__enter__()
        if ahead:
            h = r.launch(next_plan())
            r.finish(prev)
            prev = h
        else:
            r.finish(prev)
            prev = r.launch(next_plan())
        now = time.perf_counter()
        walls.append(now - t_last)
        t_last = now
    r.finish(prev)
    torch.cuda.synchronize()
    if prof is not None:
        prof.__exit__(None, None, None)
    return walls, prof


def batch1(w, steps: int) -> dict:
    r = w.runner
    g = torch.Generator().manual_seed(0)
    res = {}
    for mode in ("pipelined", "one-at-a-time"):
        p = Pipeline(r, torch.randint(0, 128000, (128,), generator=g).tolist())
        r.finish(r.launch(p.first(f"b1-{mode}")))
        ahead = mode == "pipelined"
        walls, prof = decode_walls(r, p.decode, steps, ahead=ahead, profile_last=12 if ahead else 0)
        if prof is not None:
            res["timeline"] = gpu_timeline(prof, 12)
        r.finish(r.launch(p.end()))
        steady = sorted(walls[steps // 4 :])
        res[mode] = {"msPerStepMedian": steady[len(steady) // 2] * 1e3, "tokPerS": 1 / steady[len(steady) // 2],
                     "contextEnd": p.computed}
    # The batch-1 graph replayed alone (context as left by the last step's inputs).
    res["graphReplayMs"] = replay_ms(r.graphs.graphs[r.graphs.key(1, p.computed)])
    res["bareForwardGraphMs"] = bare_forward(w, p.computed)
    return res


def bare_forward(w, ctx: int) -> float:
    """The model's batch-1 forward alone (static inputs, no staging, no sampling) in a CUDA graph at
    context ctx over the executor's own KV cache: what the decode graph adds is the difference."""
    r = w.runner
    ids, pos, meta, idx = _eb.batch1_inputs(ctx, w.num_blocks, torch.device("cuda"))
    r.model.forward(ids, pos, meta, r.kv_caches, idx)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        r.model.forward(ids, pos, meta, r.kv_caches, idx)
    return replay_ms(g)


def replay_ms(g, n: int = 50) -> float:
    """Milliseconds per replay of graph g, n replays back to back between two events (after 3 warm-ups)."""
    for _ in range(3):
        g.replay()
    torch.cuda.synchronize()
    return replay_time(g, reps=1, replays_per_timing=n)


def prefill(w, n_tokens: int = 512) -> dict:
    r = w.runner
    g = torch.Generator().manual_seed(1)
    launches, gpus, totals, samples = [], [], [], []
    stats = None
    inner = r._sample

    def timed_sample(*a, **k):  # host time of the sampling call inside each launch
        t = time.perf_counter()
        try:
            return inner(*a, **k)
        finally:
            samples.append((time.perf_counter() - t) * 1e3)

    r._sample = timed_sample
    pg = getattr(r, "prefill_graphs", None)
    replays0 = pg.replays if pg is not None else 0
    for i in range(6):
        p = Pipeline(r, torch.randint(0, 128000, (n_tokens,), generator=g).tolist())
        plan = p.first(f"pf{i}")
        torch.cuda.synchronize()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        prof = cProfile.Profile() if i == 5 else None
        t = time.perf_counter()
        a.record()
        if prof:
            prof.enable()
        h = r.launch(plan)
        if prof:
            prof.disable()
        t_launch = time.perf_counter() - t
        b.record()
        r.finish(h)
        t_total = time.perf_counter() - t
        if i > 0 and prof is None:
            launches.append(t_launch * 1e3)
            gpus.append(a.elapsed_time(b))
            totals.append(t_total * 1e3)
        if prof:
            s = io.StringIO()
            pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(18)
            stats = s.getvalue()
        r.finish(r.launch(p.end()))

    r._sample = inner
    # Does a launch wait for the GPU? Queue ~60 ms of GPU sleep first: a launch that returns after it blocked.
    p = Pipeline(r, torch.randint(0, 128000, (n_tokens,), generator=g).tolist())
    plan = p.first("pf-busy")
    torch.cuda.synchronize()
    torch.cuda._sleep(100_000_000)
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    h = r.launch(plan)
    prof.disable()
    busy_launch = (time.perf_counter() - t) * 1e3
    r.finish(h)
    r.finish(r.launch(p.end()))
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(22)
    stats = (stats or "") + "\n== launch behind a GPU sleep, by cumulative time\n" + s.getvalue()

    def med(x):
        return sorted(x)[len(x) // 2]

    # Whether the prompts replayed a prefill graph (prefill_graphs.py) instead of the eager forward.
    graph = pg is not None and pg.replays - replays0 == 6
    return {"prefillGraph": graph, "launchBehindGpuSleepMs": busy_launch, "launchMs": med(launches), "gpuMs": med(gpus), "launchPlusFinishMs": med(totals),
            "samples": {"launch": [round(x, 2) for x in launches], "gpu": [round(x, 2) for x in gpus],
                        "sampleCallMs": [round(x, 3) for x in samples]},
            "cprofile": stats}


def batch256(w, n: int = 256, prompt_len: int = 512, steps: int = 40) -> dict:
    """n requests of prompt_len tokens prefilled (budget 8192 a step), then decoding together, pipelined:
    wall ms per decode step and the GPU kernels of 6 steps by name (what a burst's decode phase runs)."""
    r = w.runner
    g = torch.Generator().manual_seed(2)
    pipes = [Pipeline(r, torch.randint(0, 128000, (prompt_len,), generator=g).tolist(),
                      first_block=i * ((prompt_len + steps + 15) // 16 + 1)) for i in range(n)]
    per_step = 8192 // prompt_len
    t0 = time.perf_counter()
    for i in range(0, n, per_step):
        plans = [p.first(f"b{j}") for j, p in enumerate(pipes[i : i + per_step], start=i)]
        merged = plans[0]
        for q in plans[1:]:
            merged["scheduledNewReqs"] += q["scheduledNewReqs"]
            merged["numScheduledTokens"].update(q["numScheduledTokens"])
        r.finish(r.launch(merged))
    prefill_s = time.perf_counter() - t0

    def decode_plan():
        plans = [p.decode() for p in pipes]
        merged = plans[0]
        for q in plans[1:]:
            merged["scheduledCachedReqs"] += q["scheduledCachedReqs"]
            merged["numScheduledTokens"].update(q["numScheduledTokens"])
        return merged

    walls, prof = decode_walls(r, decode_plan, steps, profile_last=6)
    end = pipes[0]._plan(finished=[p.rid for p in pipes])
    r.finish(r.launch(end))
    steady = sorted(walls[steps // 4 : steps - 6])
    return {"prefillSeconds": prefill_s, "decodeMsPerStepMedian": steady[len(steady) // 2] * 1e3,
            "contextEnd": pipes[0].computed, "timeline": gpu_timeline(prof, 6)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--json-out", default="")
    ap.add_argument("--skip-prefill", action="store_true")
    ap.add_argument("--skip-batch1", action="store_true")
    ap.add_argument("--batch256", action="store_true", help="also: 256 x 512-token requests decoding together")
    ap.add_argument("--kv-cache-dtype", default="auto", help="auto | fp8 (option.kv_cache_dtype)")
    args = ap.parse_args()
    res = {"device": torch.cuda.get_device_name(), "pythonDir": os.environ.get("LMI_PYTHON_DIR", "python")}
    res["copiesHostMs"] = copies()
    print(json.dumps(res["copiesHostMs"], indent=1), flush=True)
    opts = ExecutorOptions(model_dir=_eb.llama3_8b_dir(), device="cuda", dtype="bf16", load_format="dummy",
                           block_size=16, max_num_seqs=256, max_model_len=4096, enable_cuda_graph=True, gpu_memory_utilization=0.9,
                           max_num_batched_tokens=8192, kv_cache_dtype=args.kv_cache_dtype)
    res["kvCacheDtype"] = args.kv_cache_dtype
    w = Worker(opts, 0, 1)
    w.load({})
    prof = w.profile({})
    ic = w.init_cache({"numBlocks": prof["numBlocks"]})
    res["initCache"] = {k: v for k, v in ic.items() if k != "numBlocks"}
    print(json.dumps(res["initCache"]), flush=True)
    if not args.skip_batch1:
        res["batch1"] = batch1(w, args.steps)
        print(json.dumps(res["batch1"], indent=1), flush=True)
    if args.batch256:
        res["batch256"] = batch256(w)
        print(json.dumps(res["batch256"], indent=1), flush=True)
    if not args.skip_prefill:
        pf = prefill(w)
        res["prefill512"] = pf
        print(json.dumps({k: v for k, v in pf.items() if k != "cprofile"}, indent=1))
        print(pf["cprofile"], flush=True)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
