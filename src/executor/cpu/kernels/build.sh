#!/usr/bin/env bash
# Rebuilds matmul.wasm from matmul.c. The .wasm is committed so CI and users need no compiler;
# run this after editing matmul.c (Debian: apt-get install -y clang lld).
set -euo pipefail
cd "$(dirname "$0")"
clang --target=wasm32 -O3 -msimd128 -nostdlib -fno-builtin \
  -Wl,--no-entry -Wl,--import-memory -Wl,--export=__heap_base -Wl,--strip-all -Wl,-z,stack-size=8192 \
  -o matmul.wasm matmul.c
ls -l matmul.wasm
