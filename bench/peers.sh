#!/usr/bin/env bash
# Prompt-processing and generation speed of lowbit against llama.cpp and ik_llama.cpp on the
# same GGUF files, the same thread count, side by side in turns.
#
#   bench/peers.sh LLAMA_CPP IK_LLAMA_CPP [TYPE...]
#
# LLAMA_CPP and IK_LLAMA_CPP are source trees, or git directories (a bare mirror) with an
# optional @REV (e.g. /work/.mirror/ggerganov+llama.cpp/repo@b4747). This script never
# downloads anything: fetch the sources yourself. Each peer is exported to $OUT/src/<name>
# and built there (CPU only, -march=native, no curl); lowbit must be built in build/.
# The files are the synthetic Llama-3.2-1B shapes (lowbit_make_synthetic, bf16) quantized by
# llama.cpp's own llama-quantize to each TYPE (default: Q4_K_M Q8_0 Q3_K_M Q2_K Q6_K IQ4_XS).
#
# Environment: OUT (default build/peers), THREADS (2), REPS (3), ROUNDS (3), JOBS (build -j,
# 2); BUILD_ONLY=1 builds the peers and stops (measure later, on a quiet machine).
# The three engines take turns ROUNDS times per file (llama.cpp, ik_llama.cpp, lowbit, then
# again), each turn REPS repetitions, so a slow minute of a shared machine lands on every
# engine alike. Each round's figures go to $OUT/rounds.tsv. Prints one row per file: each
# engine's best round per figure (pp128, pp512, tg32 tokens/s) and lowbit's ratios to each
# peer, then the ratios of the medians over the rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
  sed -n '2,20p' "$0" >&2
  exit 2
fi
LLAMA=$1 IK=$2
shift 2
TYPES=${*:-"Q4_K_M Q8_0 Q3_K_M Q2_K Q6_K IQ4_XS"}
OUT=$(mkdir -p "${OUT:-build/peers}" && cd "${OUT:-build/peers}" && pwd)
THREADS=${THREADS:-2} REPS=${REPS:-3} ROUNDS=${ROUNDS:-3} JOBS=${JOBS:-2}
if ! [[ $ROUNDS =~ ^[1-9][0-9]*$ ]]; then
  echo "ROUNDS must be a whole number ≥ 1, not '$ROUNDS'" >&2
  exit 2
fi

# export_tree SRC[@REV] NAME: a source tree at $OUT/src/NAME (copied from a git directory).
export_tree() {
  local src=${1%@*} rev=HEAD dst=$OUT/src/$2
  [[ $1 == *@* ]] && rev=${1##*@}
  if [ -f "$dst/CMakeLists.txt" ]; then echo "$dst"; return; fi
  mkdir -p "$dst"
  if git --git-dir="$src" rev-parse --verify -q "$rev^{commit}" >/dev/null 2>&1; then
    # A mirror may lack its largest blobs (sample models): leave out what it does not hold.
    local missing=()
    mapfile -t missing < <(git --git-dir="$src" ls-tree -r "$rev" |
      awk '$2 == "blob" { print $3 " " $4 }' |
      git --git-dir="$src" cat-file --batch-check='%(objectname) %(rest)' --buffer 2>/dev/null |
      grep ' missing$' | cut -d' ' -f1 | sort -u || true)
    local exclude=()
    if [ ${#missing[@]} -gt 0 ]; then
      while read -r sha path; do
        [[ " ${missing[*]} " == *" $sha "* ]] && exclude+=(":(exclude)$path")
      done < <(git --git-dir="$src" ls-tree -r "$rev" | awk '$2 == "blob" { print $3 " " $4 }')
    fi
    git --git-dir="$src" archive "$rev" -- . "${exclude[@]}" | tar -x -C "$dst"
  elif [ -f "$src/CMakeLists.txt" ]; then
    cp -r "$src/." "$dst"
  else
    echo "peers.sh: $1 is neither a source tree nor a git directory with $rev" >&2
    exit 1
  fi
  echo "$dst"
}

# build_peer SRC NAME: llama-bench and llama-quantize of one peer in $OUT/NAME.
build_peer() {
  local tree
  tree=$(export_tree "$1" "$2")
  if [ ! -x "$OUT/$2/bin/llama-bench" ]; then
    cmake -S "$tree" -B "$OUT/$2" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
      -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >"$OUT/$2.cmake.log"
    cmake --build "$OUT/$2" -j"$JOBS" --target llama-bench llama-quantize >"$OUT/$2.build.log" 2>&1
  fi
}

build_peer "$LLAMA" llama.cpp
build_peer "$IK" ik_llama.cpp
[ -n "${BUILD_ONLY:-}" ] && exit 0
cmake --build build -j"$JOBS" --target lowbit lowbit_make_synthetic >/dev/null

BF16=$OUT/llama-1b-bf16.gguf
[ -f "$BF16" ] || build/bench/lowbit_make_synthetic "$BF16" llama-1b bf16 >/dev/null

# peer_bench NAME FILE: "pp128 pp512 tg32" from llama-bench's JSON.
peer_bench() {
  "$OUT/$1/bin/llama-bench" -m "$2" -p 128,512 -n 32 -t "$THREADS" -r "$REPS" -o json 2>/dev/null |
    python3 -c '
import json, sys
runs = json.load(sys.stdin)
def tps(p, n): return next(r["avg_ts"] for r in runs if r["n_prompt"] == p and r["n_gen"] == n)
print(f"{tps(128, 0):.1f} {tps(512, 0):.1f} {tps(0, 32):.1f}")'
}

# lowbit_bench FILE: the same three figures from `lowbit bench --json`.
lowbit_bench() {
  local a b
  local opts=(-t "$THREADS" -r "$REPS" --no-reference --json)
  a=$(build/lowbit bench "$1" -p 128 -n 32 "${opts[@]}") || return 1
  b=$(build/lowbit bench "$1" -p 512 -n 0 "${opts[@]}") || return 1
  python3 -c '
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
pp128, pp512, tg32 = a["pp_tps"], b["pp_tps"], a["tg_tps"]
print(f"{pp128:.1f} {pp512:.1f} {tg32:.1f}")' "$a" "$b"
}

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); threads $THREADS"
echo "flags: $(grep -m1 '^flags' /proc/cpuinfo | grep -o 'avx[^ ]*\|fma\|f16c' | sort -u | xargs)"
printf "%-7s | %-20s | %-20s | %-20s | %-17s | %-17s\n" file "llama.cpp pp128/512/tg32" \
  "ik_llama pp128/512/tg32" "lowbit pp128/512/tg32" "lowbit/llama.cpp" "lowbit/ik_llama"
ROUNDS_TSV=$OUT/rounds.tsv
printf "file\tround\tengine\tpp128\tpp512\ttg32\n" >"$ROUNDS_TSV"
for t in $TYPES; do
  f=$OUT/llama-1b-$t.gguf
  [ -f "$f" ] || "$OUT/llama.cpp/bin/llama-quantize" "$BF16" "$f" "$t" "$THREADS" >"$OUT/quantize-$t.log" 2>&1
  for r in $(seq "$ROUNDS"); do
    for e in llama.cpp ik_llama.cpp lowbit; do
      # (a failed run stops the script here: the assignment carries its status to set -e)
      if [ "$e" = lowbit ]; then v=$(lowbit_bench "$f"); else v=$(peer_bench "$e" "$f"); fi
      printf "%s\t%s\t%s\t%s\n" "$t" "$r" "$e" "${v// /$'\t'}" >>"$ROUNDS_TSV"
    done
  done
  python3 - "$ROUNDS_TSV" "$t" <<'PY'
import csv, statistics, sys
rows = [r for r in csv.DictReader(open(sys.argv[1]), delimiter="\t") if r["file"] == sys.argv[2]]
keys = ("pp128", "pp512", "tg32")
def runs(engine): return [[float(r[k]) for r in rows if r["engine"] == engine] for k in keys]
best = {e: [max(v) for v in runs(e)] for e in ("llama.cpp", "ik_llama.cpp", "lowbit")}
median = {e: [statistics.median(v) for v in runs(e)] for e in best}
def figs(v): return " ".join(f"{x:.1f}" for x in v)
def ratio(a, b): return " ".join(f"{x / y:.2f}" for x, y in zip(a, b))
lb = best["lowbit"]
print(f"{sys.argv[2]:<7} | {figs(best['llama.cpp']):<20} | {figs(best['ik_llama.cpp']):<20} | "
      f"{figs(lb):<20} | {ratio(lb, best['llama.cpp']):<17} | {ratio(lb, best['ik_llama.cpp']):<17}")
lm = median["lowbit"]
print(f"{'':<7} | {'(medians)':<20} | {'':<20} | {figs(lm):<20} | "
      f"{ratio(lm, median['llama.cpp']):<17} | {ratio(lm, median['ik_llama.cpp']):<17}")
PY
done
