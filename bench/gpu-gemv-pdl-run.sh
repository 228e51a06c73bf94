#!/usr/bin/env bash
# One device call for the PDL / fused-rope / decode-attention work on the small-step path (bench/notes-gemv.md).
# Usage (repo root, GPU machine): bash bench/gpu-gemv-pdl-run.sh [step|tests|all]
#   step:  the batch-1 step under each switch in one process (bench/gpu-gemv-step.py, interleaved rounds),
#          where griddepcontrol.wait sits in the compiled PTX, then the executor benchmark (execute() tok/s)
#          with every switch off (LMI_DECODE_PDL=0 LMI_DECODE_ROPE=0) and the defaults, same call
#   tests: the GEMV GPU tests (kernels vs PyTorch, rope epilogue, decode attention, model small path vs general)
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
mode=${1:-all}
export TRITON_CACHE_DIR=/tmp/triton-cache-pdl
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv,noheader
if [ "$mode" != tests ]; then
  timeout 120 python3 bench/gpu-gemv-step.py --json-out "$OUT/step.json" >"$OUT/step.log" 2>&1
  echo "step bench rc=$?"; grep -E "^==|^triton|Error|error" "$OUT/step.log" | head -20
  for f in $(grep -l "griddepcontrol.wait" $(find $TRITON_CACHE_DIR -name "*.ptx") 2>/dev/null); do
    w=$(grep -n "griddepcontrol.wait" "$f" | head -1 | cut -d: -f1)
    echo "$(basename "$f" .ptx): ld.global before wait $(head -n "$w" "$f" | grep -c 'ld.global'), after $(tail -n +"$w" "$f" | grep -c 'ld.global'); st.global before wait $(head -n "$w" "$f" | grep -c 'st.global')"
  done >"$OUT/ptx.txt"
  for v in 0 1; do  # 0: every switch off (the kernels before this change); 1: the defaults
    sw=""; [ $v = 0 ] && sw="LMI_DECODE_PDL=0 LMI_DECODE_ROPE=0"
    env $sw timeout 110 python3 bench/gpu-executor-bench.py \
      --skip-throughput --decode-steps 128 >"$OUT/bench-pdl$v.log" 2>&1
    echo "executor bench switches=$v rc=$?"; grep "^| batch-1" "$OUT/bench-pdl$v.log"
  done
fi
if [ "$mode" != step ]; then
  ( cd python/tests && timeout 230 python3 -m unittest test_executor_gpu.GemvTest -v ) >"$OUT/unittest.log" 2>&1
  echo "gemv tests rc=$?"; grep -E "^(Ran|OK|FAILED)|Error|assert|^test_" "$OUT/unittest.log" | head -30
fi
[ -f "$OUT/step.log" ] && grep "^|" "$OUT/step.log"
exit 0
