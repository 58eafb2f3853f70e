#!/usr/bin/env bash
# Installs the benchmark peer — llama.cpp through node-llama-cpp, pinned exactly (newer releases'
# lockfiles name platform builds this registry does not serve) — into .peer/ beside the checkout.
# It is a development tool for `bonsai bench --vs-peer`, not a dependency of the daemon: only the
# prebuilt CPU binary for this platform is installed, none of the optional GPU builds (~600 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
version=3.21.1
case "$(node -p 'process.arch')" in
  x64) binary=linux-x64 ;;
  arm64) binary=linux-arm64 ;;
  arm) binary=linux-armv7l ;;
  *) echo "install-peer: no prebuilt node-llama-cpp for $(node -p 'process.arch')" >&2; exit 1 ;;
esac
mkdir -p .peer
[ -f .peer/package.json ] || echo '{"private": true}' > .peer/package.json
# The postinstall would try to download or build llama.cpp: the prebuilt binary makes it unneeded.
NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --prefix .peer --omit=optional --ignore-scripts --no-audit --no-fund \
  "node-llama-cpp@$version" "@node-llama-cpp/$binary@$version"
echo "install-peer: node-llama-cpp $version ($binary) in .peer/"
