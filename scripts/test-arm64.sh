#!/usr/bin/env bash
# The native tests on aarch64 without hardware: cross-builds the C library and native tests with
# aarch64-linux-gnu-gcc into build-arm64-tests/, then runs every test under qemu-user once per
# CPU model, each standing for a class of boards:
#   cortex-a53 (Pi Zero 2 W / Pi 3), cortex-a72 (Pi 4): no dotprod -> must pick the neon path
#   cortex-a76 (Pi 5, Orin-like): dotprod -> must pick dotprod
#   max (newest cores): dotprod + i8mm -> must pick i8mm
# Any failure or illegal instruction (SIGILL) fails the run. Skips (exit 0) when the cross
# compiler or qemu-aarch64 is missing. BONSAI_TEST_QUICK trims the largest loops under qemu.
# qemu is ~10x slower than native, so the tests that do not depend on the CPU model (parsing,
# fuzzing, sampler, thread pool) run once, on cortex-a72, and the kernel-dependent ones on all.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in aarch64-linux-gnu-gcc qemu-aarch64 cmake ctest; do
  if ! command -v "$tool" >/dev/null; then
    echo "test:arm64: SKIPPED, $tool not found (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)"
    exit 0
  fi
done

build=build-arm64-tests
cmake -S native -B "$build" -DCMAKE_TOOLCHAIN_FILE="$PWD/native/cmake/toolchain-aarch64.cmake" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j2 >/dev/null

# ctest -R pattern per CPU model: everything on the Pi 4 class, the forward pass and packs again on
# the dotprod class, the kernel, path and quantization tests everywhere.
tests_for() {
  case "$1" in
    cortex-a72) echo '.' ;;
    cortex-a76) echo '^test_(kernels|kernels_paths|quants|forward|pack_model)$' ;;
    *) echo '^test_(kernels|kernels_paths|quants)$' ;;
  esac
}

expected_path() {
  case "$1" in
    cortex-a53 | cortex-a72) echo neon ;;
    cortex-a76) echo dotprod ;;
    max) echo i8mm ;;
  esac
}

export BONSAI_TEST_QUICK=1
failed=0
for cpu in cortex-a53 cortex-a72 cortex-a76 max; do
  started=$SECONDS
  # qemu-user reads the CPU model from QEMU_CPU; ctest runs each test through the toolchain's
  # CMAKE_CROSSCOMPILING_EMULATOR (qemu-aarch64 -L /usr/aarch64-linux-gnu).
  log="$build/ctest-$cpu.log"
  if ! QEMU_CPU=$cpu ctest --test-dir "$build" -j2 -R "$(tests_for "$cpu")" --output-on-failure >"$log" 2>&1; then
    cat "$log"
    echo "test:arm64: $cpu: native tests FAILED"
    failed=1
  fi
  if grep -q "Illegal instruction" "$log"; then
    grep -B5 "Illegal instruction" "$log"
    echo "test:arm64: $cpu: SIGILL"
    failed=1
  fi
  path=$(QEMU_CPU=$cpu qemu-aarch64 -L /usr/aarch64-linux-gnu "$build/tests/test_kernels_paths" --selected-path)
  want=$(expected_path "$cpu")
  if [ "$path" != "$want" ]; then
    echo "test:arm64: $cpu picked the '$path' kernels, expected '$want'"
    failed=1
  fi
  summary=$(grep -E "tests passed|tests failed" "$log" || true)
  echo "test:arm64: $cpu: path $path, ${summary:-no summary} ($((SECONDS - started)) s)"
done
exit $failed
