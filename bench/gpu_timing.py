# Timing helper shared by the GPU kernel microbenchmarks (bench/gpu-*-bench.py): a CUDA graph of launches
# replayed under CUDA events, so launch gaps stay out of the numbers and the median of several timings
# is reported. Callers rotate their inputs across launches when L2 must not serve them.
import statistics
import time

import torch


def graph_time(launches, reps: int = 15, replays_per_timing: int = 1) -> float:
    """Median milliseconds per launch of a CUDA graph holding every callable in `launches`, in order:
    graph_of(launches), then `reps` timings of `replays_per_timing` replays each."""
    g = graph_of(launches)
    ms = replay_time(g, reps, replays_per_timing)
    del g
    return ms / len(launches)


def graph_of(launches):
    """A CUDA graph of every callable in `launches`, in order: warm-up on a side stream (Triton compiles, cuBLAS
    picks kernels), capture, one replay."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for f in launches:
            f()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for f in launches:
            f()
    g.replay()
    torch.cuda.synchronize()
    return g


def replay_time(g, reps: int = 15, replays_per_timing: int = 1) -> float:
    """Median milliseconds per replay of an already captured (and warmed) CUDA graph: `reps` timings of
    `replays_per_timing` back-to-back replays between two events."""
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(replays_per_timing):
            g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / replays_per_timing)
    return sorted(times)[len(times) // 2]


def captured(step, warm: int = 3) -> tuple:
    """(a clone of step()'s output run eagerly, a CUDA graph of step) for a callable returning a tensor: the eager
    run compiles Triton kernels and lets cuBLAS pick its kernels outside the capture; the graph is replayed `warm`
    times before it is returned."""
    out = step().clone()
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        step()
    for _ in range(warm):
        g.replay()
    torch.cuda.synchronize()
    return out, g


def interleaved_rounds(graphs: dict, rounds: int = 7, replays: int = 30) -> dict:
    """{name: sorted per-round medians (ms)} for already captured and warmed CUDA graphs: each round replays
    every graph `replays` times (an event pair around each replay) before the next graph, so clock drift over
    the run falls on every variant alike."""
    out = {name: [] for name in graphs}
    for _ in range(rounds):
        for name, g in graphs.items():
            ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(replays)]
            for a, b in ev:
                a.record()
                g.replay()
                b.record()
            torch.cuda.synchronize()
            out[name].append(sorted(a.elapsed_time(b) for a, b in ev)[replays // 2])
    return {name: sorted(xs) for name, xs in out.items()}


def checked_rounds(case: str, variants: dict, check, rounds: int = 5, replays: int = 20) -> tuple:
    """Each variant's callable run once (check(its output) -> a number) and captured as a CUDA graph, then the graphs
    timed in interleaved_rounds. A variant that fails (does not compile, fit or capture) is reported with `case` and
    left out. Returns ({name: sorted per-round medians (ms)}, {name: check value})."""
    graphs, checks = {}, {}
    for name, fn in variants.items():
        try:
            checks[name] = check(fn())
            graphs[name] = graph_of([fn])
        except Exception as e:  # noqa: BLE001 - a launch or backend that refuses this input: say why, time the rest
            print(f"{case} | {name} | failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}", flush=True)
    res = interleaved_rounds(graphs, rounds=rounds, replays=replays)
    del graphs
    return res, checks


def sustained_replay(g, secs: float):
    """Replays an already captured CUDA graph back to back for `secs` seconds, so that the card settles where a long
    run holds it (at its power limit, for GEMM-heavy graphs): (ms per replay over the last 60%, the median SM clock in
    MHz and board power in W read meanwhile through NVML, NaN without it)."""
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < 0.05:  # one replay's length, to size the run
        g.replay()
        torch.cuda.synchronize()
        n += 1
    per = (time.perf_counter() - t0) / n
    total = max(10, int(secs / per))
    warm = int(total * 0.4)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    clocks, power = [], []
    for i in range(total):
        if i == warm:
            start.record()
        g.replay()
        if i >= warm and i % max(1, (total - warm) // 8) == 0:
            try:
                clocks.append(torch.cuda.clock_rate())
                power.append(torch.cuda.power_draw() / 1000)
            except Exception:  # noqa: BLE001 - no NVML binding: the timings stand alone
                pass
        if i % 4 == 3:  # keep the host at most a few replays ahead, so the readings belong to this graph
            torch.cuda.current_stream().synchronize()
    end.record()
    torch.cuda.synchronize()
    ms = start.elapsed_time(end) / (total - warm)
    return ms, statistics.median(clocks) if clocks else float("nan"), statistics.median(power) if power else float("nan")


def sustained_rounds(graphs: dict, secs: float, rounds: int) -> dict:
    """{name: [(ms, MHz, W) a round]} for already captured graphs: `rounds` rounds of sustained_replay of each graph
    for `secs` seconds, the order rotating each round so that no graph always follows the same one."""
    names = list(graphs)
    runs = {n: [] for n in names}
    for r in range(rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            runs[n].append(sustained_replay(graphs[n], secs))
    return runs
