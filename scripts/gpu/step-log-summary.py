# Summarises an executor step log (LMI_STEP_LOG=path, one JSON line per step) for the burst part of a
# benchmark: from the first step of at least --burst-tokens tokens to the end. Prints, for prefill-carrying
# steps and pure-decode steps: count, GPU span total and median, GPU idle before steps, host launch time.
import argparse
import json
import statistics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("log")
    ap.add_argument("--burst-tokens", type=int, default=4096, help="first step of the burst has at least this many")
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


if __name__ == "__main__":
    main()
