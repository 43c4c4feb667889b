#!/usr/bin/env bash
# Prompt-processing and generation speed of lowbit against llama.cpp and ik_llama.cpp on the
# same GGUF files, the same thread count, one run side by side.
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
# Environment: OUT (default build/peers), THREADS (2), REPS (3), JOBS (build -j, 2);
# BUILD_ONLY=1 builds the peers and stops (measure later, on a quiet machine).
# Prints one row per file: pp128, pp512 and tg32 tokens/s of each engine and lowbit's ratio
# to each peer.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
  sed -n '2,17p' "$0" >&2
  exit 2
fi
LLAMA=$1 IK=$2
shift 2
TYPES=${*:-"Q4_K_M Q8_0 Q3_K_M Q2_K Q6_K IQ4_XS"}
OUT=$(mkdir -p "${OUT:-build/peers}" && cd "${OUT:-build/peers}" && pwd)
THREADS=${THREADS:-2} REPS=${REPS:-3} JOBS=${JOBS:-2}

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
  a=$(build/lowbit bench "$1" -p 128 -n 32 -t "$THREADS" -r "$REPS" --no-reference --json)
  b=$(build/lowbit bench "$1" -p 512 -n 0 -t "$THREADS" -r "$REPS" --no-reference --json)
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
for t in $TYPES; do
  f=$OUT/llama-1b-$t.gguf
  [ -f "$f" ] || "$OUT/llama.cpp/bin/llama-quantize" "$BF16" "$f" "$t" "$THREADS" >"$OUT/quantize-$t.log" 2>&1
  read -r l1 l2 l3 < <(peer_bench llama.cpp "$f")
  read -r k1 k2 k3 < <(peer_bench ik_llama.cpp "$f")
  read -r o1 o2 o3 < <(lowbit_bench "$f")
  ratio() { python3 -c "print(' '.join(f'{a / b:.2f}' for a, b in zip([$1, $2, $3], [$4, $5, $6])))"; }
  printf "%-7s | %-20s | %-20s | %-20s | %-17s | %-17s\n" "$t" "$l1 $l2 $l3" "$k1 $k2 $k3" \
    "$o1 $o2 $o3" "$(ratio "$o1" "$o2" "$o3" "$l1" "$l2" "$l3")" "$(ratio "$o1" "$o2" "$o3" "$k1" "$k2" "$k3")"
done
