#!/usr/bin/env bash
# Rebuilds kernels.wasm from matmul.c, attention.c and activations.c. The .wasm is committed so CI and users need no
# compiler; run this after editing the C sources (Debian: apt-get install -y clang lld).
# The memory is shared (threads proposal) so a helper thread's instance can run the same kernels on the
# same weights; the kernels use no stack (no __stack_pointer access), so instances cannot collide.
set -euo pipefail
cd "$(dirname "$0")"
clang --target=wasm32 -O3 -msimd128 -matomics -mbulk-memory -nostdlib -fno-builtin \
  -Wl,--no-entry -Wl,--import-memory -Wl,--export=__heap_base -Wl,--strip-all -Wl,-z,stack-size=8192 \
  -Wl,--shared-memory -Wl,--max-memory=4294967296 \
  -o kernels.wasm matmul.c attention.c activations.c
ls -l kernels.wasm
