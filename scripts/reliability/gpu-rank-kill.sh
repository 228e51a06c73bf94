#!/usr/bin/env bash
# Kills the GPU executor's rank in the middle of streams, repeatedly, on the GPU machine: the whole
# server from the bundle (scripts/gpu/build-bundle.sh, .gpu-node/ in `carry`) serves models/tiny-kjv with
# --executor gpu; each round starts 4 long streams, SIGKILLs the Python rank, and records how each
# stream ended, what /ping said, and the time from the kill to the next 200 answer (recovery).
set -uo pipefail
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-/tmp/out}
ROUNDS=${ROUNDS:-3}
mkdir -p "$OUT"
cd "$(dirname "$0")/../.."
xz -dc .gpu-node/node.xz >/tmp/node && chmod +x /tmp/node
export LMI_EXECUTOR_PYTHONPATH="$PWD/python"
/tmp/node .gpu-node/lmi.mjs serve models/tiny-kjv --executor gpu --port 8080 >"$OUT/server.log" 2>&1 &
srv=$!
wait_ping() { for _ in $(seq 1 600); do curl -sf -o /dev/null http://127.0.0.1:8080/ping && return 0; sleep 0.1; done; return 1; }
wait_ping || { echo "server never ready"; tail -30 "$OUT/server.log"; exit 1; }
body='{"inputs": "In the beginning", "parameters": {"max_new_tokens": 900, "ignore_eos_token": true}, "stream": true}'
now_ms() { date +%s%3N; }
for r in $(seq 1 "$ROUNDS"); do
  pids=()
  for i in 1 2 3 4; do
    curl -sN --max-time 120 http://127.0.0.1:8080/invocations -H 'Content-Type: application/json' -d "$body" >"/tmp/s$r.$i" &
    pids+=($!)
  done
  sleep 0.6
  rank=$(pgrep -f "lmi_executor" | head -1)
  t0=$(now_ms)
  kill -9 "$rank"
  wait "${pids[@]}"  # every stream must end by itself (curl's 120 s cap would show a hang)
  t_end=$(now_ms)
  ping=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/ping)
  # recovery: first successful generation after the kill
  for _ in $(seq 1 1200); do curl -sf -o /dev/null http://127.0.0.1:8080/invocations -H 'Content-Type: application/json' \
    -d '{"inputs": "And God said", "parameters": {"max_new_tokens": 4}}' && break; sleep 0.05; done
  t_ok=$(now_ms)
  for i in 1 2 3 4; do
    lines=$(wc -l <"/tmp/s$r.$i")
    last=$(tail -c 300 "/tmp/s$r.$i" | tr '\n' ' ' | tail -c 160)
    echo "round $r stream $i: $lines lines; ends: $last"
  done
  echo "round $r: killed rank pid $rank; streams all ended $((t_end - t0)) ms after the kill; /ping right after: $ping; first 200 after $((t_ok - t0)) ms"
done 2>&1 | tee "$OUT/rank-kill.txt"
curl -s http://127.0.0.1:8080/ping | tee -a "$OUT/rank-kill.txt"
kill "$srv"; wait "$srv" 2>/dev/null
grep -iE "died|death|restart|exited" "$OUT/server.log" | head -20
