#!/usr/bin/env bash
# The whole test suite: C tests (plain, then ASan+UBSan), the no-floating-point build of the
# runtime, and the Python tests against the installed package. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)

echo "== C tests"
cmake -S . -B build/test -G Ninja -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build/test -j "$jobs"
ctest --test-dir build/test --output-on-failure

echo "== C tests under AddressSanitizer + UndefinedBehaviorSanitizer"
cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DINTEDGE_SANITIZE=ON >/dev/null
cmake --build build/asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  ctest --test-dir build/asan --output-on-failure

echo "== every operator under the sanitizers, driven from Python (needs the installed package)"
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  LD_PRELOAD="$(cc -print-file-name=libasan.so):$(cc -print-file-name=libubsan.so)" \
  INTEDGE_LIBRARY="$PWD/build/asan/libintedge.so" python tests/python/sanitizer_smoke.py

echo "== runtime core builds with -mgeneral-regs-only (no floating point)"
case "$(uname -m)" in
  x86_64|aarch64)
    cmake -S . -B build/nofloat -G Ninja -DINTEDGE_NO_FLOAT=ON -DINTEDGE_BUILD_TESTS=OFF >/dev/null
    cmake --build build/nofloat -j "$jobs" ;;
  *) echo "skipped: -mgeneral-regs-only exists on x86_64 and aarch64 only" ;;
esac

echo "== Python tests"
python -m pytest tests/python
