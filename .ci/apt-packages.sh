#!/usr/bin/env bash
# System packages that test suites need, installed as root by .ci/run before `npm ci`.
# Idempotent and quick when everything is present: apt is only touched for missing packages.
# python3-torch (Debian's PyTorch 1.13, CPU) serves /usr/bin/python3 for the Python GPU-executor tests.
set -euo pipefail

packages=(python3-torch)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
