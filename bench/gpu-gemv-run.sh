#!/usr/bin/env bash
# One device call for the small-batch GEMV work (bench/notes-gemv.md): the GEMV GPU tests, the whole-model
# benchmark and profile with the decode-sized kernels off (LMI_DECODE_GEMV=0, the general cuBLAS path) and
# on, in the same call, and the kernel microbenchmark. Usage (repo root, GPU machine):
#   bash bench/gpu-gemv-run.sh [sweep|final]   (sweep: every tile config; final: the configs gemv.py uses)
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
mode=${1:-sweep}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv,noheader
( cd python/tests && timeout 100 python3 -m unittest test_executor_gpu.GemvTest -v ) >"$OUT/unittest.log" 2>&1
echo "gemv tests rc=$?"; grep -E "^(Ran|OK|FAILED)|Error|assert" "$OUT/unittest.log" | head -20
bench_args="--skip-throughput --decode-steps 64"
[ "$mode" = final ] && bench_args="--decode-steps 128"
for v in 0 1; do
  LMI_DECODE_GEMV=$v timeout 100 python3 bench/gpu-executor-bench.py $bench_args \
    >"$OUT/bench-gemv$v.log" 2>&1; echo "bench LMI_DECODE_GEMV=$v rc=$?"; grep "^|" "$OUT/bench-gemv$v.log"
done
if [ "$mode" != sweep ]; then
  for v in 0 1; do
    LMI_DECODE_GEMV=$v timeout 120 python3 bench/gpu-executor-profile.py \
      >"$OUT/profile-gemv$v.log" 2>&1; echo "profile LMI_DECODE_GEMV=$v rc=$?"; grep -A16 "^decode batch 1:" "$OUT/profile-gemv$v.log"
  done
fi
if [ "$mode" = sweep ]; then
  timeout 130 python3 bench/gpu-gemv-bench.py --ms 1,2,4,8 --json-out "$OUT/gemv-bench.json" >"$OUT/gemv-bench.log" 2>&1
  echo "gemv bench rc=$?"; grep -v "^|" "$OUT/gemv-bench.log" | tail -60; grep "^|" "$OUT/gemv-bench.log"
else
  timeout 100 python3 bench/gpu-gemv-bench.py --quick --ms 1,2,4,8 --json-out "$OUT/gemv-bench.json" >"$OUT/gemv-bench.log" 2>&1
  echo "gemv bench rc=$?"; grep -v "^|" "$OUT/gemv-bench.log" | tail -40
fi
