#!/usr/bin/env bash
# The handler path on the GPU machine (torch + transformers there, none here): the built-in
# djl_python.huggingface handler over the worker protocol (hf_gpu_check.py), then through the whole
# server bundled by scripts/gpu/build-bundle.sh (.gpu-node/ in `carry`): static batching with list
# inputs and dynamic batching (batch_size=2), enable_streaming=true jsonlines, and feature-extraction.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
cd "$(dirname "$0")/../.."
python3 test/fixtures/handlers/hf_gpu_check.py models/tiny-kjv 2>&1 | tee "$OUT/hf-worker-check.txt"
xz -dc .gpu-node/node.xz >/tmp/node && chmod +x /tmp/node
export LMI_EXECUTOR_PYTHONPATH="$PWD/python"
mk() {
  local d=/tmp/models/$1
  shift
  mkdir -p "$d" && cp models/tiny-kjv/*.json models/tiny-kjv/*.safetensors "$d/" && rm -f "$d/golden.json"
  printf '%s\n' "$@" >"$d/serving.properties"
}
mk static engine=Python option.rolling_batch=disable option.task=text-generation batch_size=2 max_batch_delay=500
mk stream engine=Python option.rolling_batch=disable option.enable_streaming=true
mk fe engine=Python option.rolling_batch=disable option.task=feature-extraction
/tmp/node .gpu-node/lmi.mjs serve -m static=/tmp/models/static stream=/tmp/models/stream fe=/tmp/models/fe \
  --port 8080 >"$OUT/server.log" 2>&1 &
srv=$!
for _ in $(seq 1 240); do
  curl -sf http://127.0.0.1:8080/ping >/dev/null 2>&1 && break
  kill -0 "$srv" 2>/dev/null || break
  sleep 1
done
{
  echo "== /ping"; curl -s http://127.0.0.1:8080/ping
  echo "== static batch: list inputs"
  curl -s -w '\nHTTP %{http_code}\n' http://127.0.0.1:8080/predictions/static -H 'Content-Type: application/json' \
    -d '{"inputs": ["In the beginning", "And God said"], "parameters": {"max_new_tokens": 16}}'
  echo "== dynamic batch: two concurrent requests (x-batch-size would show on custom handlers)"
  for p in "In the beginning" "And God said"; do
    curl -s -w '\nHTTP %{http_code}\n' http://127.0.0.1:8080/predictions/static -H 'Content-Type: application/json' \
      -d "{\"inputs\": \"$p\", \"parameters\": {\"max_new_tokens\": 12}}" &
  done
  wait
  echo "== enable_streaming=true"
  curl -sN -w '\nHTTP %{http_code}\n' -D - http://127.0.0.1:8080/predictions/stream -H 'Content-Type: application/json' \
    -d '{"inputs": "In the beginning", "parameters": {"max_new_tokens": 8}}'
  echo "== feature-extraction (first 200 bytes)"
  curl -s http://127.0.0.1:8080/predictions/fe -H 'Content-Type: application/json' -d '{"inputs": "In the beginning"}' | head -c 200
  echo
} 2>&1 | tee "$OUT/http-check.txt"
kill "$srv"
wait "$srv" 2>/dev/null
tail -n 30 "$OUT/server.log"
