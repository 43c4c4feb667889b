#!/usr/bin/env bash
# Runs every test: setup/build, the unit + llama.cpp judge tests (CTest), the parser
# tests again under AddressSanitizer + UndefinedBehaviorSanitizer, and each libFuzzer
# target for a fixed time on its seed corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
# 11 targets: 15 s each keeps the fuzzing under 3 minutes (scripts/fuzz_campaign.sh runs long).
FUZZ_SECONDS=${LOWBIT_FUZZ_SECONDS:-15}

bash scripts/setup.sh

echo "== unit and judge tests (Release)"
ctest --test-dir build --output-on-failure -j2 -LE parser

echo "== parser tests under ASan + UBSan"
# Without MPI: no parser or fuzz target runs over ranks (tests/mpi/run.sh does, in Release).
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DLOWBIT_SANITIZE=ON \
      -DCMAKE_CXX_COMPILER=clang++ -DLOWBIT_FUZZ=ON -DLOWBIT_MPI=OFF >/dev/null
cmake --build build-asan -j"$(nproc)"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j2 -L parser

echo "== fuzzing (${FUZZ_SECONDS}s per target)"
for target in build-asan/fuzz/fuzz_*; do
  name=$(basename "$target")
  corpus=$(mktemp -d)
  cp fuzz/corpus/"${name#fuzz_}"/* "$corpus"/ 2>/dev/null || true
  dict=()
  if [ -f fuzz/dict/"${name#fuzz_}".dict ]; then dict=(-dict=fuzz/dict/"${name#fuzz_}".dict); fi
  echo "-- $name"
  status=0
  "$target" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -print_final_stats=0 \
    "${dict[@]}" -artifact_prefix=build-asan/ "$corpus" >build-asan/"$name".log 2>&1 || status=$?
  rm -rf "$corpus"
  if [ "$status" -ne 0 ]; then  # the report: sanitizer output, stack, the input's path
    tail -n 60 build-asan/"$name".log
    exit "$status"
  fi
  grep -E '^#[0-9]+[[:space:]]+DONE' build-asan/"$name".log | tail -n 1
done
echo "all tests passed"
