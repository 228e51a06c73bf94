#!/usr/bin/env bash
# GPU-machine driver for models/ (the device `run` calls it from the repo root; carry .cache/kjv,
# made by dump_kjv.sh). Steps in $1, comma-separated: golden = goldens of the zoo and tiny-kjv;
# train = train tiny-kjv once per config in $TINY_CONFIGS, keep the best validation loss, golden it;
# check = recompute every golden and compare with the committed one; repro = retrain with the
# defaults for each seed in $REPRO_SEEDS into /tmp (committed model untouched). Results go to $OUT.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/model-out}
mkdir -p "$OUT"
steps=${1:-golden}
py=${PYTHON:-python3}

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $py -c 'import torch, transformers, tokenizers, safetensors; print("torch", torch.__version__, "transformers", transformers.__version__, "tokenizers", tokenizers.__version__, "safetensors", safetensors.__version__)'
} 2>&1 | tee "$OUT/env.txt"

if [[ $steps == *golden* ]]; then
  t=$(date +%s)
  $py scripts/model/golden.py models/zoo/* models/tiny-kjv 2>&1 | grep -v 'Loading weights' | tee "$OUT/golden.log"
  tar czf "$OUT/golden.tar.gz" models/zoo/*/golden.json models/tiny-kjv/golden.json
  echo "goldens: $(($(date +%s) - t))s" | tee -a "$OUT/golden.log"
fi

if [[ $steps == *train* ]]; then
  # Each config is a set of train_tiny.py flags; the first is the script's defaults.
  IFS=';' read -r -a configs <<<"${TINY_CONFIGS:-}"
  [ ${#configs[@]} -eq 0 ] && configs=("")
  best="" best_loss=""
  for i in "${!configs[@]}"; do
    dir=/tmp/tiny-kjv-$i
    rm -rf "$dir"
    echo "=== config $i: ${configs[$i]:-(defaults)}" | tee -a "$OUT/report.txt"
    # shellcheck disable=SC2086
    $py scripts/model/train_tiny.py --out "$dir" --metrics "$dir.metrics.json" ${configs[$i]} 2>&1 |
      grep -v -e 'Loading weights' -e 'Writing model shards' | tee -a "$OUT/train.log"
    [ -f "$dir.metrics.json" ] || continue
    loss=$($py -c "import json,sys; print(json.load(open(sys.argv[1]))['val_loss'])" "$dir.metrics.json")
    if [ -z "$best" ] || $py -c "import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)" "$loss" "$best_loss"; then
      best=$i best_loss=$loss
    fi
  done
  if [ -z "$best" ]; then
    echo "no training run finished" | tee -a "$OUT/report.txt"
    exit 1
  fi
  echo "=== chosen: config $best (validation loss $best_loss)" | tee -a "$OUT/report.txt"
  cp /tmp/tiny-kjv-$best/{config.json,generation_config.json,model.safetensors} models/tiny-kjv/
  cp /tmp/tiny-kjv-$best.metrics.json "$OUT/metrics.json"
  $py scripts/model/golden.py models/tiny-kjv 2>&1 | grep -v 'Loading weights' | tee -a "$OUT/report.txt"
  tar czf "$OUT/tiny-kjv.tar.gz" -C models tiny-kjv/config.json tiny-kjv/generation_config.json \
    tiny-kjv/model.safetensors tiny-kjv/golden.json
fi
if [[ $steps == *check* ]]; then
  $py scripts/model/golden.py --check models/zoo/* models/tiny-kjv 2>&1 | grep -v 'Loading weights' |
    tee -a "$OUT/check.log"
fi

if [[ $steps == *repro* ]]; then
  for seed in ${REPRO_SEEDS:-0 1}; do
    echo "=== repro: defaults, seed $seed" | tee -a "$OUT/repro.txt"
    $py scripts/model/train_tiny.py --out "/tmp/repro-$seed" --seed "$seed" --metrics "/tmp/repro-$seed.json" \
      --report "$OUT/repro.txt" 2>&1 | grep -v -e 'Loading weights' -e 'Writing model shards' | tee -a "$OUT/repro.log"
    cat "/tmp/repro-$seed.json" >>"$OUT/repro.txt" && echo >>"$OUT/repro.txt"
  done
fi
ls -l "$OUT"
