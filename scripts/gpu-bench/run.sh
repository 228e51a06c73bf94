#!/usr/bin/env bash
# Side-by-side GPU benchmark, one call on the GPU machine: serves a Llama-3-8B-shaped model with dummy
# weights through our whole server (bundle + Node in .gpu-node/; scripts/gpu-bench/prepare.sh builds a
# snapshot of HEAD holding them in tmp/gpu-snap/, carried and run from there), runs an `lmi bench`
# concurrency sweep against it, stops it (freeing the GPU), then runs the transformers peers
# (bench/peers/hf_peers.py) at the same levels and lengths. Everything lands in $OUT;
# scripts/gpu-bench/write-report.ts turns that into docs/benchmarks.md's section and chart.
# Knobs (env): IN OUTLEN LEVELS K (prompts per level = K x concurrency) SERVER_WAIT_S BENCH_S PEERS_S;
# LMI_C, LMI_S: one more level through the LMI /invocations jsonlines surface (text prompts; empty skips it);
# MODEL_DIR + EXECUTOR=cpu + NODE=node + LMI_JS=bin/lmi.mjs + SKIP_PEERS=1 run the plumbing on a CPU machine.
set -uo pipefail
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
IN=${IN:-512} OUTLEN=${OUTLEN:-128} LEVELS=${LEVELS:-1,8,32,128} K=${K:-3}
SERVER_WAIT_S=${SERVER_WAIT_S:-150} BENCH_S=${BENCH_S:-120} PEERS_S=${PEERS_S:-150}
EXECUTOR=${EXECUTOR:-gpu} PORT=${PORT:-8080} LMI_C=${LMI_C-32}
# The lent machine returns at most 8 files from $OUT: results and metadata go there (6 files), logs and the
# chart go to $LOGS and come back packed as one logs.tgz, re-packed after every phase.
LOGS=/tmp/gpu-bench-logs
mkdir -p "$OUT" "$LOGS"
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$LOGS/run.log"; }
pack_logs() { tar czf "$OUT/logs.tgz" -C "$LOGS" . 2>/dev/null; }

if [ -z "${NODE:-}" ]; then
  xz -dc .gpu-node/node.xz >/tmp/node && chmod +x /tmp/node
  NODE=/tmp/node
fi
LMI=("${LMI_JS:-.gpu-node/lmi.mjs}")
if [ -z "${MODEL_DIR:-}" ]; then
  MODEL_DIR=/tmp/m8b
  python3 scripts/gpu/make-dummy-model-dir.py "$MODEL_DIR"
fi
cp "$MODEL_DIR/config.json" "$OUT/model-config.json"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$OUT/gpu.txt"
log "node $("$NODE" --version), model $MODEL_DIR, executor $EXECUTOR"

export LMI_EXECUTOR_PYTHONPATH="$PWD/python"
SERVE=("$NODE" "${LMI[@]}" serve "$MODEL_DIR" --executor "$EXECUTOR" --port "$PORT")
BENCH=("$NODE" "${LMI[@]}" bench --backend openai --base-url "http://127.0.0.1:$PORT" --model m8b
  --tokenizer "$MODEL_DIR" --random-input-len "$IN" --random-output-len "$OUTLEN" --ignore-eos
  --sweep-concurrency "$LEVELS" --prompts-per-concurrency "$K" --num-warmups 2 --no-progress
  --label "lmi serve (ours)" --result-file "$OUT/ours.json" --chart "$LOGS/ours.svg")
BENCH_LMI=("$NODE" "${LMI[@]}" bench --backend lmi --base-url "http://127.0.0.1:$PORT"
  --tokenizer "$MODEL_DIR" --random-input-len "$IN" --random-output-len "$OUTLEN" --ignore-eos
  --max-concurrency "${LMI_C:-1}" --num-prompts $((K * ${LMI_C:-1})) --no-progress
  --label "lmi serve (ours), /invocations" --result-file "$OUT/ours-lmi.json")
printf '%s\n' "# IN=$IN OUTLEN=$OUTLEN LEVELS=$LEVELS K=$K LMI_C=$LMI_C" "${SERVE[*]}" "${BENCH[*]}" >"$OUT/commands.txt"
[ -n "$LMI_C" ] && printf '%s\n' "${BENCH_LMI[*]}" >>"$OUT/commands.txt"

"${SERVE[@]}" >"$LOGS/server.log" 2>&1 &
srv=$!
t0=$(date +%s)
ready=0
while [ $(($(date +%s) - t0)) -lt "$SERVER_WAIT_S" ] && kill -0 "$srv" 2>/dev/null; do
  if curl -sf -o /dev/null "http://127.0.0.1:$PORT/ping" 2>/dev/null ||
    python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$PORT/ping', timeout=2)" 2>/dev/null; then
    ready=1
    break
  fi
  grep -q "failed to load" "$LOGS/server.log" && break
  sleep 1
done
log "server ready=$ready after $(($(date +%s) - t0)) s"
rc=0
if [ "$ready" = 1 ]; then
  timeout "$BENCH_S" "${BENCH[@]}" >"$LOGS/ours.txt" 2>&1
  rc=$?
  log "lmi bench rc=$rc"
  tail -n 32 "$LOGS/ours.txt"
  if [ -n "$LMI_C" ]; then
    timeout "${LMI_S:-60}" "${BENCH_LMI[@]}" >"$LOGS/ours-lmi.txt" 2>&1
    log "lmi bench (LMI surface) rc=$?"
  fi
else
  tail -n 30 "$LOGS/server.log"
  rc=1
fi
# Stop the server and its executor children (by their ids) so the peers get the whole GPU.
kids=$(pgrep -P "$srv" 2>/dev/null)
kill "$srv" 2>/dev/null
for _ in $(seq 1 30); do kill -0 "$srv" 2>/dev/null || break; sleep 1; done
for k in $kids; do kill "$k" 2>/dev/null; done
wait "$srv" 2>/dev/null
log "server stopped; log error lines: $(grep -ciE 'error|traceback' "$LOGS/server.log")"
pack_logs
# The executor's CUDA context can outlive the kill by a moment; the peers need its memory back.
if command -v nvidia-smi >/dev/null; then
  for _ in $(seq 1 20); do
    used=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)
    [ "${used:-0}" -lt 2000 ] && break
    sleep 1
  done
  log "GPU memory used before the peers: ${used:-?} MiB"
fi

if [ -z "${SKIP_PEERS:-}" ]; then
  PEERS=(python3 bench/peers/hf_peers.py --config "$MODEL_DIR/config.json" --input-len "$IN"
    --output-len "$OUTLEN" --levels "$LEVELS" --out "$OUT/peers.json")
  printf '%s\n' "${PEERS[*]}" >>"$OUT/commands.txt"
  timeout "$PEERS_S" "${PEERS[@]}" >"$LOGS/peers.txt" 2>&1
  log "peers rc=$?"
  grep -E "^(model ready|hf-)" "$LOGS/peers.txt" | cut -c1-400
  tail -n 5 "$LOGS/peers.txt"
  pack_logs
fi
exit "$rc"
