#!/usr/bin/env bash
# A/B of pipelined steps on the GPU machine, in one call: the pipelined-step tests on CUDA, then the
# whole server benchmark (scripts/gpu/server-bench.sh) with LMI_PIPELINE_STEPS=0 (one step at a time)
# and with pipelining on, each on a fresh server. Needs .gpu-node/ in `carry` (build-bundle.sh).
# Results: $OUT/off/, $OUT/on/ (server.log, http-bench.json, steps.jsonl: the executor's step log); the
# step-log summaries and a short table are printed last.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
cd "$(dirname "$0")/../.."
( cd python && python3 -m unittest tests.test_executor_pipelined -v ) >"$OUT/pipelined-tests.log" 2>&1
echo "pipelined tests rc=$?"; tail -n 3 "$OUT/pipelined-tests.log"
for mode in off on; do
  mkdir -p "$OUT/$mode"
  if [ "$mode" = off ]; then export LMI_PIPELINE_STEPS=0; else unset LMI_PIPELINE_STEPS; fi
  export LMI_STEP_LOG="$OUT/$mode/steps.jsonl"
  OUT="$OUT/$mode" bash scripts/gpu/server-bench.sh "$@" >"/tmp/run-$mode.log" 2>&1
  echo "$mode rc=$?"
  tail -n 5 "/tmp/run-$mode.log"
done
for mode in off on; do
  echo "== $mode: executor steps of the burst (scripts/gpu/step-log-summary.py)"
  python3 scripts/gpu/step-log-summary.py "$OUT/$mode/steps.jsonl"
done
python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
rows = []
for mode in ("off", "on"):
    p = os.path.join(out, mode, "http-bench.json")
    if not os.path.exists(p):
        print(mode, "no result"); continue
    r = json.load(open(p))
    rows.append((mode, r))
    print(mode, json.dumps(r)[:600])
PY
