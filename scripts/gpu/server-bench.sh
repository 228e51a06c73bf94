#!/usr/bin/env bash
# Runs the whole server on the GPU machine and benchmarks it over HTTP: unpacks the carried Node binary,
# writes a Llama-3-8B-shaped dummy-weight model folder, starts `lmi serve --executor gpu` from the bundle,
# waits for /ping, then runs bench/gpu-http-bench.mjs. Needs .gpu-node/ (scripts/gpu/build-bundle.sh) in
# `carry`. Extra arguments become serving.properties overrides (key=value).
set -uo pipefail
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
cd "$(dirname "$0")/../.."
xz -dc .gpu-node/node.xz >/tmp/node && chmod +x /tmp/node
/tmp/node --version
python3 scripts/gpu/make-dummy-model-dir.py /tmp/m8b "$@"
export LMI_EXECUTOR_PYTHONPATH="${LMI_EXECUTOR_PYTHONPATH:-$PWD/python}"  # another python/ copy: an A/B
# LMI_BUNDLE=path: another build of the server (an A/B of TypeScript changes; default .gpu-node/lmi.mjs).
# LMI_NODE_ARGS: options for the server's node (e.g. "--cpu-prof --cpu-prof-dir=$OUT/prof": written at shutdown).
# shellcheck disable=SC2086
/tmp/node ${LMI_NODE_ARGS:-} "${LMI_BUNDLE:-.gpu-node/lmi.mjs}" serve /tmp/m8b --executor gpu --port 8080 >"$OUT/server.log" 2>&1 &
srv=$!
ready=0
for _ in $(seq 1 300); do
  if ! kill -0 "$srv" 2>/dev/null; then break; fi
  if grep -q "failed to load" "$OUT/server.log"; then break; fi  # /ping stays 500 for a FAILED model
  if python3 -c 'import urllib.request,sys; sys.exit(0 if urllib.request.urlopen("http://127.0.0.1:8080/ping", timeout=2).status == 200 else 1)' 2>/dev/null; then
    ready=1
    break
  fi
  sleep 1
done
if [ "$ready" != 1 ]; then
  echo "server did not become ready"
  tail -n 40 "$OUT/server.log"
  kill "$srv" 2>/dev/null
  exit 1
fi
grep -E "loaded in|started in" "$OUT/server.log" | head -3
# LMI_BENCH_ARGS: more arguments for the benchmark client (e.g. --client=fetch).
# shellcheck disable=SC2086
/tmp/node bench/gpu-http-bench.mjs --url=http://127.0.0.1:8080 --model=m8b --json-out="$OUT/http-bench.json" ${LMI_BENCH_ARGS:-} 2>&1 | tail -n 4
rc=${PIPESTATUS[0]}
kill "$srv"
wait "$srv" 2>/dev/null
grep -ciE "error|traceback" "$OUT/server.log" | xargs echo "server log error lines:"
exit "$rc"
