#!/usr/bin/env bash
# Installs what immunize needs on a Debian machine: system packages (when missing), npm dependencies,
# the native float64 BLAS/LAPACK addon and the TypeScript build. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(libopenblas-dev liblapacke-dev g++ make python3)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: missing Debian packages: ${missing[*]}" >&2
    echo "setup: install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

# onnxruntime-node's install script only downloads its CUDA execution provider (the CPU one ships in the package).
# package.json's allowScripts denies that script (npm >= 11.16); ONNXRUNTIME_NODE_INSTALL=skip stops it under older
# npm. On a CUDA 12 host run ONNXRUNTIME_NODE_INSTALL=cuda12 scripts/setup.sh and the provider is fetched below.
ort_install="${ONNXRUNTIME_NODE_INSTALL:-skip}"
export ONNXRUNTIME_NODE_INSTALL="$ort_install"

stamp=node_modules/.immunize-installed
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ] || [ ! -f build/Release/immunize_linalg.node ]; then
  # builds the native addon (install) and dist/ (prepare)
  npm ci --no-audit --no-fund
  touch "$stamp"
else
  npm run --silent build
fi

if [ "$ort_install" != skip ]; then
  ort_bin="node_modules/onnxruntime-node/bin/napi-v6/$(node -p 'process.platform + "/" + process.arch')"
  if [ ! -f "$ort_bin/libonnxruntime_providers_cuda.so" ]; then
    echo "setup: fetching onnxruntime's execution providers ($ort_install)" >&2
    node node_modules/onnxruntime-node/script/install
  fi
fi
