# Summarises an executor step log (LMI_STEP_LOG=path, one JSON line per step) for the burst part of a
# benchmark: from the first step of at least --burst-tokens tokens to the end. Prints, for prefill-carrying
# steps and pure-decode steps: count, GPU span total and median, GPU idle before steps, host launch time; for a
# served executor, the message loop's wait for each plan and rank 0's relay (all steps, and those after GPU idle).
# --server-log F --requests N (the server's log of the same run, text format): when the burst's N requests reached
# the server (from its access log: end time minus duration) against the previous request's end and the launch of
# the first full prompt step.
import argparse
import bisect
import datetime
import json
import os
import re
import statistics

_ACCESS = re.compile(r'(\S+) INFO RequestId=\S+ \S+ "POST [^"]+" 200 (\d+)ms')


def arrivals(server_log: str, n: int, first_step_t: float) -> str:
    spans = []
    for line in open(server_log):
        m = _ACCESS.match(line)
        if m:
            end = datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
            spans.append((end - int(m.group(2)) / 1000, end))
    if len(spans) <= n:
        return "server log: fewer requests than --requests"
    starts = sorted(a for a, _ in spans[-n:])
    return (f"burst requests: the first reached the server {1000 * (starts[0] - spans[-n - 1][1]):.0f} ms after the "
            f"previous request ended, the last {1000 * (starts[-1] - starts[0]):.0f} ms after the first; the first "
            f"full prompt step was launched {1000 * (first_step_t - starts[0]):.0f} ms after the first arrival")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("log")
    ap.add_argument("--burst-tokens", type=int, default=4096, help="first step of the burst has at least this many")
    ap.add_argument("--server-log", default="", help="the server's log of the same run (request arrivals)")
    ap.add_argument("--requests", type=int, default=256, help="requests in the burst (with --server-log)")
    ap.add_argument("--loop-log", default="", help="the server's LMI_LOOP_LOG of the same run (Node's load)")
    ap.add_argument("--wire-log", default="", help="the server's LMI_WIRE_LOG of the same run (plan and reply times)")
    ap.add_argument("--bench-json", default="", help="bench/gpu-http-bench.mjs --json-out of the same run (the burst's "
                    "end: when its streams ended against the last step done and its reply at Node; with --wire-log)")
    a = ap.parse_args()
    steps = [json.loads(line) for line in open(a.log)]
    first = next((i for i, s in enumerate(steps) if s["tokens"] >= a.burst_tokens), None)
    if first is None:
        print("no burst found")
        return
    burst = steps[first:]
    wall = burst[-1]["t"] - burst[0]["t"]
    print(f"burst: {len(burst)} steps over {wall:.2f} s of host time (first launch to last launch)")
    print("| steps | count | GPU span total s | median ms | GPU idle before total s | host launch median ms |")
    print("|---|---|---|---|---|---|")
    for name, sel in (("with prompt tokens", [s for s in burst if not s["decode"]]),
                      ("pure decode", [s for s in burst if s["decode"]]), ("all", burst)):
        if not sel:
            continue
        span = [s.get("gpuSpanMs", 0.0) for s in sel]
        idle = [s.get("idleBeforeMs", 0.0) for s in sel]
        launch = [s["launchMs"] for s in sel]
        print(f"| {name} | {len(sel)} | {sum(span) / 1e3:.2f} | {statistics.median(span):.2f} | "
              f"{sum(idle) / 1e3:.3f} | {statistics.median(launch):.2f} |")
    dec = [s for s in burst if s["decode"] and s["reqs"] >= 200]
    if dec:
        print(f"decode steps with >= 200 requests: {len(dec)}, median GPU span "
              f"{statistics.median(s.get('gpuSpanMs', 0.0) for s in dec):.2f} ms")
    served = [s for s in burst if "planWaitMs" in s]
    if served:  # the message loop's waits (served executors): is an idle GPU waiting for Node or for the relay?
        idle = [s for s in served if s.get("idleBeforeMs", 0.0) > 1.0]

        def waits(sel):
            return (f"plan wait median {statistics.median(s['planWaitMs'] for s in sel):.2f} ms, relay median "
                    f"{statistics.median(s['relayMs'] for s in sel):.2f} ms")

        print(f"message loop: all {len(served)} steps {waits(served)}"
              + (f"; the {len(idle)} after > 1 ms of GPU idle {waits(idle)}" if idle else ""))
    if a.server_log:
        print(arrivals(a.server_log, a.requests, burst[0]["t"]))
    wire = read_wire_log(a.wire_log) if a.wire_log else {}
    if a.wire_log:
        print(round_trip(wire, burst))
    if a.bench_json:
        print(burst_end(a.bench_json, wire, burst))
    if a.loop_log:
        print("Node event loop busy: " + loop_load(a.loop_log, burst))
        if os.path.exists(a.loop_log + ".engine"):  # the engine thread's (option.engine_thread)
            print("engine thread loop busy: " + loop_load(a.loop_log + ".engine", burst))


def read_wire_log(wire_log: str) -> dict:
    """LMI_WIRE_LOG's lines by step id."""
    return {w["stepId"]: w for w in (json.loads(line) for line in open(wire_log))}


def round_trip(wire: dict, burst: list) -> str:
    """Where the time between a step finishing and the step it let Node send being launched goes, on rank 0 (see the
    header). The step whose reply let Node send plan S is the last one replied before S was sent: S-2 with two steps
    in flight, S-3 with three."""
    replies = sorted((w["replyAt"], k) for k, w in wire.items() if "replyAt" in w)
    reply_times = [t for t, _ in replies]
    r0 = {s["step"]: s for s in burst if s.get("rank", 0) == 0}
    parts = []
    for step, s in r0.items():
        w = wire.get(step)
        if not s["decode"] or w is None:
            continue
        i = bisect.bisect_right(reply_times, w["sentAt"]) - 1
        if i < 0:
            continue
        trigger = replies[i][1]
        prev, wp = r0.get(trigger), wire[trigger]
        if prev is None or "doneAt" not in prev:
            continue
        start = s["t"] - s["launchMs"] / 1e3
        parts.append((s.get("idleBeforeMs", 0.0) > 1.0, wp["replyAt"] - prev["doneAt"] * 1e3, w["sentAt"] - wp["replyAt"],
                      start * 1e3 - w["sentAt"], s["launchMs"]))
    if not parts:
        return "round trip: no decode steps with both logs"

    def med(sel):
        return " / ".join(f"{statistics.median(p[i] for p in sel):.2f}" for i in range(1, 5))

    idle = [p for p in parts if p[0]]
    return ("round trip (rank 0, ms, reply / Node / plan / launch): " + f"all {len(parts)} decode steps {med(parts)}"
            + (f"; the {len(idle)} after > 1 ms of GPU idle {med(idle)}" if idle else ""))


def burst_end(bench_json: str, wire: dict, burst: list) -> str:
    """The burst's tail: from the executor seeing its last step done (step log doneAt) to that step's reply reaching
    Node (the wire log's lines by step, empty without one) and to the client's streams ending (the benchmark's
    endsEpochMs, in ascending order), ms."""
    ends = json.load(open(bench_json)).get("burst", {}).get("endsEpochMs")
    last = max((s for s in burst if "doneAt" in s), key=lambda s: s["doneAt"], default=None)
    if not ends or last is None:
        return "burst end: no stream end times or no doneAt in the step log"
    done = last["doneAt"] * 1e3
    out = f"burst end (ms after the last step, {last['step']}, was done): "
    if "replyAt" in wire.get(last["step"], {}):
        out += f"its reply at Node +{wire[last['step']]['replyAt'] - done:.1f}; "
    tail16 = ends[max(0, len(ends) - 16)]
    return out + (f"streams ended: first +{ends[0] - done:.1f}, 16th from last +{tail16 - done:.1f}, median "
                  f"+{ends[len(ends) // 2] - done:.1f}, last +{ends[-1] - done:.1f}")


def loop_load(loop_log: str, burst: list) -> str:
    """An event loop's busy fraction over the burst's prompt phase (first step to the first pure-decode step) and
    its decode phase (from there to the last step): the mean of the samples weighted by their overlap with each
    phase (a loop that saturates may write one long sample for the whole phase), and the most busy sample."""
    samples = [json.loads(line) for line in open(loop_log)]
    t0 = burst[0]["t"] * 1000
    t1 = next((s["t"] for s in burst if s["decode"]), burst[-1]["t"]) * 1000
    t2 = burst[-1]["t"] * 1000
    out = []
    for name, lo, hi in (("prompt phase", t0, t1), ("decode phase", t1, t2)):
        parts = [(min(x["t"], hi) - max(x["t"] - x["ms"], lo), x["busy"]) for x in samples]
        parts = [(w, b) for w, b in parts if w > 0]
        if parts:
            mean = sum(w * b for w, b in parts) / sum(w for w, _ in parts)
            out.append(f"{name} {mean:.2f} mean, {max(b for _, b in parts):.2f} max over {len(parts)} samples")
    return "; ".join(out) if out else "no samples inside the burst"


if __name__ == "__main__":
    main()
