#!/usr/bin/env bash
# A long fuzzing campaign over every libFuzzer target (or the ones named), on a persistent
# corpus outside the repository, then one summary line per target.
#
#   scripts/fuzz_campaign.sh [RUNS | SECONDSs] [target...]
#     10000000 (default)  executions per target (-runs=)
#     600s                seconds per target (-max_total_time=)
#     target              gguf, safetensors, ... (default: every fuzz/fuzz_*.cpp)
#
# Builds $LOWBIT_FUZZ_BUILD (default build-fuzz: RelWithDebInfo + ASan/UBSan + coverage; set
# it to build-asan to reuse the test build) if needed. Each target's corpus grows in
# $BUILD/corpus/<target> (the seeds of fuzz/corpus/<target> are read too, never written),
# crashes land in $BUILD/crashes/<target>/ (the summary counts this run's), the full log in
# $BUILD/logs/<target>.log. A crash stops that target (libFuzzer's way) and the campaign goes
# on to the next; the exit status is 1 when any target crashed. LOWBIT_FUZZ_ARGS adds
# libFuzzer flags (e.g. "-use_value_profile=1 -max_len=65536"); LOWBIT_BUILD_JOBS (default 2)
# is the build's -j. Targets run one after another; to use several cores, start one campaign per
# target once the build exists, e.g. `printf '%s\n' gguf recipe | xargs -P2 -I{} $0 10000000 {}`.
set -euo pipefail
cd "$(dirname "$0")/.."

LIMIT=${1:-10000000}
shift $(( $# > 0 ? 1 : 0 ))
BUILD=${LOWBIT_FUZZ_BUILD:-build-fuzz}
JOBS=${LOWBIT_BUILD_JOBS:-2}
EXTRA=${LOWBIT_FUZZ_ARGS:-}

case "$LIMIT" in
  *[0-9]s) limit_flag=-max_total_time=${LIMIT%s} ;;
  *[!0-9]* | "") echo "usage: $0 [RUNS | SECONDSs] [target...]" >&2; exit 2 ;;
  *) limit_flag=-runs=$LIMIT ;;
esac

if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for f in fuzz/fuzz_*.cpp; do
    t=$(basename "$f" .cpp)
    targets+=("${t#fuzz_}")
  done
fi

if [ ! -f "$BUILD/build.ninja" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOWBIT_SANITIZE=ON \
        -DCMAKE_CXX_COMPILER=clang++ -DLOWBIT_FUZZ=ON -DLOWBIT_BENCH=OFF >/dev/null
fi
cmake --build "$BUILD" -j"$JOBS" --target "${targets[@]/#/fuzz_}"

mkdir -p "$BUILD/logs"
summary=()
crashed=0
for t in "${targets[@]}"; do
  corpus="$BUILD/corpus/$t" crashes="$BUILD/crashes/$t" log="$BUILD/logs/$t.log"
  mkdir -p "$corpus" "$crashes"
  start="$BUILD/logs/$t.start"  # this run's crashes: artifacts newer than this file
  touch "$start"
  args=("$limit_flag" -rss_limit_mb=2048 -timeout=30 -print_final_stats=1
        -artifact_prefix="$crashes/")
  if [ -f "fuzz/dict/$t.dict" ]; then args+=(-dict="fuzz/dict/$t.dict"); fi
  seeds=()
  if [ -d "fuzz/corpus/$t" ]; then seeds=("fuzz/corpus/$t"); fi
  echo "== fuzz_$t ($limit_flag), log in $log"
  status=0
  # shellcheck disable=SC2086  # EXTRA holds several flags
  "$BUILD/fuzz/fuzz_$t" "${args[@]}" $EXTRA "$corpus" "${seeds[@]}" >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
  files=$(find "$corpus" -type f | wc -l)
  kb=$(find "$corpus" -type f -printf '%s\n' | awk '{ n += $1 } END { printf "%dK", n / 1024 }')
  found=$(find "$crashes" -type f -newer "$start" | wc -l)
  if [ "$status" -ne 0 ]; then
    crashed=1
    grep -m 1 -E '^==[0-9]+==ERROR|runtime error|deadly signal|out-of-memory|timeout' "$log" || true
  fi
  summary+=("$(printf '%-18s %11s %8s %6s %7s %7s %7s %5s' "$t" "${execs:-?}" "${rate:-?}" \
               "${cov:-?}" "${ft:-?}" "$files" "$kb" "$found")")
done

echo
printf '%-18s %11s %8s %6s %7s %7s %7s %5s\n' target execs exec/s cov ft corpus size crash
printf '%s\n' "${summary[@]}"
exit "$crashed"
