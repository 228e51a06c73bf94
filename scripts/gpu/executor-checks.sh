#!/usr/bin/env bash
# One device run for the GPU executor: environment facts, the executor's CUDA unittest suites (goldens
# conformance with graphs on and off, pipelined steps, Triton attention, GEMV/int4 kernels, graphs vs eager,
# prefill graphs vs eager), then the Llama-3-8B-shaped benchmark with and without CUDA graphs. Logs and JSON
# go to $OUT; a short table is printed last.
# Usage (repo root, on the GPU machine): bash scripts/gpu/executor-checks.sh [quick]
set -uo pipefail
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
cd "$(dirname "$0")/../.."
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
  python3 -c 'import torch, triton, sys; print(sys.version.split()[0], torch.__version__, triton.__version__)'
} 2>&1 | tee "$OUT/env.txt"

# The suites that use CUDA (the rest is the CPU path CI runs on every submission). On a fresh machine
# compiling their Triton kernel variants takes minutes: give the call 10 minutes.
( cd python && python3 -m unittest -v tests.test_executor_conformance tests.test_executor_pipelined \
    tests.test_executor_gpu tests.test_executor_prefill_graphs tests.test_executor_step_kernels \
    tests.test_executor_fp8_kv tests.test_executor_quant tests.test_executor_lt_gemm tests.test_executor_contrastive \
    tests.test_executor_decode_gemm ) \
    >"$OUT/unittest.log" 2>&1
ut=$?
tail -n 25 "$OUT/unittest.log"

bench_rc=0
if [ "${1:-}" != "tests-only" ]; then
  python3 bench/gpu-executor-bench.py --json-out "$OUT/bench-graph.json" 2>&1 | tee "$OUT/bench-graph.log" | tail -n 6
  bench_rc=${PIPESTATUS[0]}
  python3 bench/gpu-executor-bench.py --dtype int8 --json-out "$OUT/bench-int8.json" 2>&1 | tee "$OUT/bench-int8.log" | tail -n 4
  python3 bench/gpu-int8-accuracy.py --json-out "$OUT/int8-accuracy.json" 2>&1 | grep "^|" | tee "$OUT/int8-accuracy.md"
  if [ "${1:-}" != "quick" ]; then
    python3 bench/gpu-executor-bench.py --no-cuda-graph --skip-throughput --json-out "$OUT/bench-eager.json" \
      2>&1 | tee "$OUT/bench-eager.log" | tail -n 4
    python3 bench/gpu-executor-bench.py --no-fused --skip-throughput --json-out "$OUT/bench-unfused.json" \
      2>&1 | tee "$OUT/bench-unfused.log" | tail -n 4
  fi
fi
if [ "${1:-}" = "profile" ] || [ "${2:-}" = "profile" ]; then
  python3 bench/gpu-executor-profile.py --json-out "$OUT/profile.json" >"$OUT/profile.log" 2>&1; tail -n 60 "$OUT/profile.log"
fi
echo "unittest rc=$ut bench rc=$bench_rc"
grep -E "^(Ran|OK|FAILED)" "$OUT/unittest.log"
