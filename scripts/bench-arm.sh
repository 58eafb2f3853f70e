#!/usr/bin/env bash
# ARM kernel cost without ARM hardware, deterministically: cross-builds native/tools/bench/bench_kernels
# for aarch64, runs it under qemu-user with qemu's instruction-count plugin on cortex-a72 (Pi 4, no
# dotprod) and cortex-a76 (Pi 5, dotprod), and prints guest instructions per 128-weight block:
#   {"<cpu>": {"<type>": {"path", "insns_per_block", "gemm_insns_per_block_per_token"}}}
# for a 2048 x 6144 (rows x cols) GEMV including activation quantization, and a GEMM over a batch
# of BATCH tokens. Each figure is (count of a run with N products - count of the same run with 0)
# / (N x blocks [x tokens]), so set-up (weights, packing) cancels out. One thread.
#
# With --pack instead: guest instructions per decoded byte of .bnz chunk decoding (bench_pack, level
# 2) for each tiny-qwen3 fixture model (one weight type each, plus F32 norms), stories260K (F32) and
# the bundled model (trained Q1_0):
#   {"<cpu>": {"<model>": {"decoded_bytes", "insns_per_decoded_byte"}}}
# counted the same way: (a run with N decodes of every chunk - a run with 0) / (N x bytes).
#
# With --token instead: guest instructions per generated token of the whole forward pass on a
# synthetic model of Bonsai-1.7B's exact shape (bench_token: one thread, the context filled to 510
# positions), split by where they run: matrix products (the kernels' files), attention (its files)
# and the rest (norms, RoPE, SwiGLU, activation copies, libc):
#   {"<cpu>": {"path", "insns_per_token", "matrix_products", "attention", "rest", "rest_share"}}
# qemu's hotblocks plugin counts the executions of every translated block; each block is put to
# the function holding it (the static binary's symbols) and that function to its object file.
# (a run decoding N tokens - a run decoding 0) / N, per part.
#
# Installs what it needs when missing (cross compiler, qemu-user, glib headers) and builds the
# plugin from Debian's qemu source in a temporary directory (never committed: GPL).
# Usage: scripts/bench-arm.sh [--pack | --token] [> native/tools/bench/arm-insns.json]; progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

CPUS=(cortex-a72 cortex-a76)
TYPES=(q1_0 tq2_0 tq1_0 q8_0)
ROWS=2048 COLS=6144 BATCH=16 ITERS=2

log() { echo "bench:arm: $*" >&2; }

need_packages() {
  local missing=()
  command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
  command -v qemu-aarch64 >/dev/null || missing+=(qemu-user)
  pkg-config --exists glib-2.0 2>/dev/null || missing+=(libglib2.0-dev pkg-config)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# Debian ships no TCG plugins: build tests/plugin/insn.c from the qemu source of the installed
# version (a deb-src entry is added if the system has none).
build_plugin() {
  local dir=$1 plugin=${2:-tests/plugin/insn.c}
  if ! grep -rqs "^Types:.*deb-src\|^deb-src" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources >/etc/apt/sources.list.d/bonsai-deb-src.sources
    apt-get update -qq
  fi
  (cd "$dir" && apt-get source --download-only -qq qemu >/dev/null 2>&1)
  local orig
  orig=$(ls "$dir"/qemu_*.orig.tar.* | head -1)
  tar -xf "$orig" -C "$dir" --wildcards '*/include/qemu/qemu-plugin.h' "*/$plugin"
  local src
  src=$(ls -d "$dir"/qemu-*/ | head -1)
  # hotblocks reports its 20 busiest blocks; every block is wanted here
  sed -i 's/^static guint64 limit = 20;/static guint64 limit = G_MAXUINT64;/' "$src/$plugin"
  gcc -O2 -shared -fPIC -I"$src/include/qemu" $(pkg-config --cflags glib-2.0) "$src/$plugin" \
    -o "$dir/lib$(basename "$plugin" .c).so" $(pkg-config --libs glib-2.0)
}

need_packages
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
log "building the qemu instruction-count plugin"
build_plugin "$tmp"

log "cross-building bench_kernels"
build=build-arm64-bench
cmake -S native -B "$build" -DCMAKE_TOOLCHAIN_FILE="$PWD/native/cmake/toolchain-aarch64.cmake" -DCMAKE_BUILD_TYPE=Release \
  -DBONSAI_TESTS=OFF >/dev/null
if [ "${1:-}" = --token ]; then
  build_plugin "$tmp" contrib/plugins/hotblocks.c
  [ -f dist/cli/main.js ] || { log "build first (npm run build): the model is written by bonsai synth"; exit 1; }
  cmake --build "$build" -j2 --target bonsai_core >/dev/null
  # static, so that libc's blocks have symbols too
  aarch64-linux-gnu-gcc -O2 -std=c11 -static -Inative native/tools/bench/bench_token.c "$build/libbonsai_core.a" \
    -lpthread -lm -o "$build/bench_token"
  model=${BONSAI_BENCH_DIR:-/tmp}/bonsai-1.7b-synth.gguf
  vocab=${BONSAI_FIXTURES:-$PWD/../shared/fixtures}/qwen3-vocab/ggml-vocab-qwen3.gguf
  [ -f "$model" ] || node dist/cli/main.js synth --shape 1.7b --seed 1 $([ -f "$vocab" ] && echo --vocab-from "$vocab") -o "$model" >&2
  aarch64-linux-gnu-nm -A --defined-only "$build/libbonsai_core.a" >"$tmp/objects"
  aarch64-linux-gnu-nm -n --defined-only "$build/bench_token" >"$tmp/symbols"
  json="{"
  for cpu in "${CPUS[@]}"; do
    for n in 0 "$ITERS"; do
      log "$cpu: decoding $n token(s) at context 512"
      # counted by a callback under a lock (inline counters lose updates to the load's threads)
      qemu-aarch64 -cpu "$cpu" -plugin "$tmp/libhotblocks.so,inline=off" -d plugin \
        "$build/bench_token" "$model" 510 "$n" 2>"$tmp/blocks-$n" >"$tmp/out"
    done
    json+="$([ "$json" = "{" ] || echo ",")\"$cpu\": $(python3 scripts/arm-token-split.py "$tmp/symbols" "$tmp/objects" \
      "$tmp/blocks-0" "$tmp/blocks-$ITERS" "$ITERS" "$(sed -n 's/.*"path": "\([^"]*\)".*/\1/p' "$tmp/out")")"
  done
  echo "$json}" | python3 -m json.tool --indent 2
  exit 0
fi
if [ "${1:-}" = --pack ]; then
  cmake --build "$build" -j2 --target bench_pack >/dev/null
  fixtures=${BONSAI_FIXTURES:-$PWD/../shared/fixtures}
  decode_count() { # cpu file iters
    BENCH_PACK_ITERS=$3 qemu-aarch64 -cpu "$1" -L /usr/aarch64-linux-gnu -plugin "$tmp/libinsn.so,inline=on" -d plugin \
      "$build/tools/bench_pack" "$2" 2>"$tmp/err" >"$tmp/out"
    sed -n 's/^insns: //p' "$tmp/err"
  }
  json="{"
  for cpu in "${CPUS[@]}"; do
    json+="$([ "$json" = "{" ] || echo ",")\"$cpu\": {"
    first=1
    for model in "$fixtures"/qwen3-tiny/models/tiny-qwen3-{q1_0,tq1_0,tq2_0,q8_0,f32}.gguf \
      "$fixtures"/stories260K/stories260K.gguf models/tinystories-xs-q1_0.gguf; do
      log "$cpu $model"
      base=$(decode_count "$cpu" "$model" 0)
      n=$(decode_count "$cpu" "$model" "$ITERS")
      bytes=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["total"]["decoded_bytes"])' "$tmp/out")
      [ $first = 1 ] || json+=","
      first=0
      json+="\"$(basename "$model" .gguf)\": {\"decoded_bytes\": $bytes, \"insns_per_decoded_byte\": "
      json+="$(awk -v a="$n" -v b="$base" -v n="$ITERS" -v c="$bytes" 'BEGIN { printf "%.3f", (a - b) / (n * c) }')}"
    done
    json+="}"
  done
  echo "$json}" | python3 -m json.tool --indent 2
  exit 0
fi
cmake --build "$build" -j2 --target bonsai_tools >/dev/null
aarch64-linux-gnu-gcc -O3 -std=c11 -Wall -Wextra -Inative native/tools/bench/bench_kernels.c \
  "$build/tools/libbonsai_tools.a" "$build/libbonsai_core.a" -lpthread -lm -o "$build/bench_kernels"

# Guest instructions of one run (qemu's plugin prints "insns: N" at exit) and its path.
count() { # cpu type op iters batch
  qemu-aarch64 -cpu "$1" -L /usr/aarch64-linux-gnu -plugin "$tmp/libinsn.so,inline=on" -d plugin \
    "$build/bench_kernels" "$2" "$3" "$4" "$5" "$ROWS" "$COLS" 2>"$tmp/err" >"$tmp/out"
  sed -n 's/^insns: //p' "$tmp/err"
}
path_of() { sed -n 's/.*"path": "\([a-z0-9]*\)".*/\1/p' "$tmp/out"; }
per_block() { # insns_N insns_0 iters tokens
  awk -v a="$1" -v b="$2" -v n="$3" -v t="$4" -v blocks=$((ROWS * COLS / 128)) \
    'BEGIN { printf "%.2f", (a - b) / (n * blocks * t) }'
}

json="{"
for cpu in "${CPUS[@]}"; do
  json+="$([ "$json" = "{" ] || echo ",")\"$cpu\": {"
  first=1
  for type in "${TYPES[@]}"; do
    log "$cpu $type"
    base=$(count "$cpu" "$type" gemv 0 1)
    gemv=$(count "$cpu" "$type" gemv "$ITERS" 1)
    path=$(path_of)
    gbase=$(count "$cpu" "$type" gemm 0 "$BATCH")
    gemm=$(count "$cpu" "$type" gemm 1 "$BATCH")
    [ $first = 1 ] || json+=","
    first=0
    json+="\"$type\": {\"path\": \"$path\", \"insns_per_block\": $(per_block "$gemv" "$base" "$ITERS" 1),"
    json+=" \"gemm_insns_per_block_per_token\": $(per_block "$gemm" "$gbase" 1 "$BATCH")}"
  done
  json+="}"
done
json+="}"
echo "$json" | python3 -m json.tool --indent 2
