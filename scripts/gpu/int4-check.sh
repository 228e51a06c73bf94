#!/usr/bin/env bash
# One device run for weight-only int4: the CPU-path quant tests and the Triton int4 kernel test on CUDA, then
# (mode "sweep") the kernel against cuBLAS bf16 / our int8 kernel with a tile sweep, or (mode "full") the
# executor benchmark for bf16, int8 and int4 and the accuracy table on the zoo goldens. Logs and JSON go to
# $OUT; a short table is printed last.
# Usage (repo root, on the GPU machine): bash scripts/gpu/int4-check.sh [sweep|full]
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
cd "$(dirname "$0")/../.."
mode=${1:-sweep}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
  python3 -c 'import torch, triton, sys; print(sys.version.split()[0], torch.__version__, triton.__version__)'
} 2>&1 | tee "$OUT/env.txt"
( cd python/tests && python3 -m unittest -v test_executor_quant test_executor_gpu.Int4KernelTest ) >"$OUT/unittest.log" 2>&1
ut=$?
tail -n 8 "$OUT/unittest.log"
if [ "$mode" = "sweep" ]; then
  python3 bench/gpu-int4-kernel-bench.py --rows 1,4,8,64,512 --sweep-rows 1,4 --json-out "$OUT/int4-kernel.json" 2>&1 | tee "$OUT/int4-kernel.log"
  python3 bench/gpu-executor-bench.py --dtype int4 --skip-throughput --json-out "$OUT/bench-int4.json" 2>&1 \
    | tee "$OUT/bench-int4.log" | tail -n 3
else
  python3 bench/gpu-int4-kernel-bench.py --quick --rows 1,8,64 --json-out "$OUT/int4-kernel.json" 2>&1 | tee "$OUT/int4-kernel.log"
  for dt in bf16 int8 int4; do
    python3 bench/gpu-executor-bench.py --dtype $dt --json-out "$OUT/bench-$dt.json" 2>&1 | tee "$OUT/bench-$dt.log" | tail -n 4
  done
  python3 bench/gpu-quant-accuracy.py --json-out "$OUT/quant-accuracy.json" 2>&1 | grep "^|\|^device" | tee "$OUT/quant-accuracy.md"
fi
echo "unittest rc=$ut"
grep -E "^(Ran|OK|FAILED)" "$OUT/unittest.log"
