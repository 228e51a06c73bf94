# Where a served batch-1 decode step's GPU time goes, against its decode graph replayed alone (in process, no Node):
# the runner is driven as the engine drives it (launch step N+1, then finish step N) over one request with a
# 128-token prompt for 110 decode steps (contexts 129-238: the graph within the 256-key bound), with CUDA events
# around the host-to-device copy of the step's inputs, the graph replay and the copy of the sampled token out.
# Medians per step over the steady part: wall time, copy in, replay, copy out, the gap between steps, and the same
# graph replayed back to back. Three rounds, each on a fresh request. Then a torch.profiler window of 10 pipelined
# steps: the GPU's span, busy time and largest gaps (bench/gpu-step-anatomy.py's gpu_timeline).
# Llama-3-8B shape, bf16, dummy weights. LMI_PYTHON_DIR=path runs another copy of python/ (A/B).
#   python3 bench/gpu-served-step.py
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("LMI_PYTHON_DIR") or os.path.join(HERE, "..", "python"))
sys.path.insert(0, HERE)
from bench_scripts import load_script  # noqa: E402

anat = load_script("gpu-step-anatomy.py")
from lmi_executor import cuda_graphs  # noqa: E402
from lmi_executor.config import ExecutorOptions  # noqa: E402
from lmi_executor.worker import Worker  # noqa: E402

STEPS, SKIP = 110, 10


def event():
    return torch.cuda.Event(enable_timing=True)


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def main():
    opts = ExecutorOptions(model_dir=anat._eb.llama3_8b_dir(), device="cuda", dtype="bf16", load_format="dummy",
                           block_size=16, max_num_seqs=256, max_model_len=4096, enable_cuda_graph=True,
                           gpu_memory_utilization=0.9, max_num_batched_tokens=8192)
    w = Worker(opts, 0, 1)
    w.load({})
    w.init_cache({"numBlocks": w.profile({})["numBlocks"]})
    r = w.runner
    gen = torch.Generator().manual_seed(0)
    count = [0]

    def new_request():
        p = anat.Pipeline(r, torch.randint(0, 128000, (128,), generator=gen).tolist())
        count[0] += 1
        r.finish(r.launch(p.first(f"r{count[0]}")))
        return p

    def pipelined(p, n):
        walls, _ = anat.decode_walls(r, p.decode, n)
        r.finish(r.launch(p.end()))
        return walls

    # Instrumentation: [before copy in, after copy in, after replay, after copy out] per decode-graph step.
    marks = []
    copy_into, run, finish_later = cuda_graphs.copy_into, cuda_graphs.DecodeGraphs.run, r._finish_later

    def copy_into_marked(dst, t):
        if marks and len(marks[-1]) != 4:
            marks.pop()  # a copy that was not a decode graph's
        a = event()
        a.record()
        copy_into(dst, t)
        b = event()
        b.record()
        marks.append([a, b])

    def run_marked(self, *args, **kw):
        out = run(self, *args, **kw)
        c = event()
        c.record()
        marks[-1].append(c)
        return out

    def finish_later_marked(out, states, pair):
        h = finish_later(out, states, pair)
        if marks and len(marks[-1]) == 3:
            d = event()
            d.record()
            marks[-1].append(d)
        return h

    res = {}
    for _ in range(3):
        res.setdefault("runner wall ms", []).append(median(pipelined(new_request(), STEPS)[SKIP:]) * 1e3)
        cuda_graphs.copy_into, cuda_graphs.DecodeGraphs.run, r._finish_later = (
            copy_into_marked, run_marked, finish_later_marked)
        marks.clear()
        try:
            walls = pipelined(new_request(), STEPS)
        finally:
            cuda_graphs.copy_into, cuda_graphs.DecodeGraphs.run, r._finish_later = copy_into, run, finish_later
        torch.cuda.synchronize()
        ms = [m for m in marks if len(m) == 4][SKIP:-2]
        rows = {
            "instrumented wall ms": median(walls[SKIP:]) * 1e3,
            "step ms (copy in to next copy in)": median([a[0].elapsed_time(b[0]) for a, b in zip(ms, ms[1:])]),
            "copy in ms": median([m[0].elapsed_time(m[1]) for m in ms]),
            "replay ms": median([m[1].elapsed_time(m[2]) for m in ms]),
            "copy out ms": median([m[2].elapsed_time(m[3]) for m in ms]),
            "between steps ms": median([a[3].elapsed_time(b[0]) for a, b in zip(ms, ms[1:])]),
        }
        key = r.graphs.key(1, 200)
        g = r.graphs.graphs[key]
        for _ in range(3):
            g.replay()
        a, b = event(), event()
        a.record()
        for _ in range(100):
            g.replay()
        b.record()
        b.synchronize()
        rows[f"replay alone ms, graph {key}"] = a.elapsed_time(b) / 100
        for k, v in rows.items():
            res.setdefault(k, []).append(v)
    for k, v in res.items():
        print(f"{k}: {' / '.join(f'{x:.4f}' for x in v)}", flush=True)

    p = new_request()
    prev = r.launch(p.decode())
    for _ in range(20):
        h = r.launch(p.decode())
        r.finish(prev)
        prev = h
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(10):
            h = r.launch(p.decode())
            r.finish(prev)
            prev = h
        r.finish(prev)
        torch.cuda.synchronize()
    tl = anat.gpu_timeline(prof, 10)
    print(json.dumps({k: tl[k] for k in ("spanMsPerStep", "busyMsPerStep", "gapMsPerStep", "largestGapsUs")}))


if __name__ == "__main__":
    main()
