#!/usr/bin/env bash
# Coverage-guided fuzzing of the loaders: builds the libFuzzer harnesses of the C runtime (clang,
# ASan, UBSan), makes the seed corpus from the tests' models, and runs each harness for SECONDS
# (default 60): fuzz_model and fuzz_state (C), then fuzz_onnx.py (the ONNX importer) and
# fuzz_checkpoint.py (the .iec container), both atheris.
# Any crash, sanitizer report, leak, hang or (in the importer) exception other than IntedgeError
# fails the run and leaves its input in build/fuzz/ (crash-*, timeout-*, leak-*, oom-*): turn it
# into a regression test (the input into tools/fuzz/regressions/HARNESS/, which every run replays
# first, and a test in tests/c/ or tests/python/).
# Usage: tools/fuzz/run.sh [SECONDS] [extra libFuzzer options]   (needs the installed package)
# The long runs of docs/reliability.md: FUZZ_HARNESSES=state tools/fuzz/run.sh 0 -runs=10000000
# (FUZZ_HARNESSES: which of "model state onnx checkpoint" to run; 0 seconds: no time limit).
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-60}
shift || true
build=${FUZZ_BUILD_DIR:-build/fuzz}  # another folder lets a long run go on beside the suite's
harnesses=${FUZZ_HARNESSES:-model state onnx checkpoint}

mkdir -p "$build"
python tools/fuzz/make_seeds.py "$build/seeds"
if [[ " $harnesses " =~ " model "|" state " ]]; then
  if command -v clang >/dev/null; then
    CC=clang cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DINTEDGE_FUZZ=ON \
      -DINTEDGE_BUILD_TESTS=OFF >/dev/null
    cmake --build "$build" -j 2 --target fuzz_model fuzz_state >/dev/null
  else
    echo "skipped fuzz_model and fuzz_state: libFuzzer needs clang (apt-get install clang)"
    harnesses=${harnesses//model/}
    harnesses=${harnesses//state/}
  fi
fi
if [[ " $harnesses " =~ " onnx "|" checkpoint " ]] && ! python -c "import atheris" 2>/dev/null; then
  echo "skipped fuzz_onnx.py and fuzz_checkpoint.py: they need atheris (pip install '.[test]')"
  harnesses=${harnesses//onnx/}
  harnesses=${harnesses//checkpoint/}
fi

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export INTEDGE_FUZZ_MODEL="$PWD/$build/seeds/state_model.iem"
for harness in $harnesses; do
  corpus="$build/corpus/$harness"
  mkdir -p "$corpus"
  log="$build/fuzz_$harness.log"
  regressions=()
  [ -d "tools/fuzz/regressions/$harness" ] && regressions=("$PWD/tools/fuzz/regressions/$harness")
  command=("./fuzz_$harness")
  [ -f "tools/fuzz/fuzz_$harness.py" ] && command=(python "$PWD/tools/fuzz/fuzz_$harness.py")
  # -timeout: one input may take 10 s (a large valid model trains a step); -rss_limit_mb bounds memory
  if ! (cd "$build" && "${command[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 "$@" "corpus/$harness" "seeds/$harness" "${regressions[@]}") >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz_$harness FAILED: see $log and the crash-* file in $build/" >&2
    exit 1
  fi
  execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$')
  cov=$(grep -E '^#[0-9]+.*(DONE|pulse|REDUCE|NEW)' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+')
  edges=$(grep -oE '\(([0-9]+) inline 8-bit counters\)' "$log" | grep -oE '[0-9]+' | head -1 || echo "?")
  took=$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" | grep -oE '[0-9]+ second' | grep -oE '[0-9]+')
  echo "fuzz_$harness: $execs runs in $took s, $cov (of $edges instrumented edges), corpus $(ls "$corpus" | wc -l) inputs, 0 crashes"
done
