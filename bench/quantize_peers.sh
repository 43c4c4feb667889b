#!/usr/bin/env bash
# Quantization throughput of lowbit against llama.cpp's own quantizer (ggml_quantize_chunk in
# node-llama-cpp's libggml-base, through tests/judge/llamacpp_native), per type, on the same
# 512 x 4096 Gaussian matrix (sigma 0.02). llama.cpp quantizes on one thread here; lowbit's
# benchmark (bench_quantize.cpp) on two, so the ratio divides lowbit's figure by 2: one core
# against one core.
#
#   bench/quantize_peers.sh [TYPE...]      (after scripts/setup.sh and a build in build/)
#
# llama.cpp gets all-ones importance for the types it refuses to quantize without
# (IQ2_XXS, IQ2_XS, IQ1_S); lowbit gets none. Prints MB of f32 weights per second and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
TYPES=${*:-"Q4_K Q2_K IQ4_XS IQ3_S IQ3_XXS IQ2_S IQ2_XS IQ2_XXS IQ1_M IQ1_S TQ2_0 TQ1_0"}
LIB=tests/judge/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64
NATIVE=build/tests/llamacpp_native
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
python3 - "$W" <<'PY'
import random, struct, sys
random.seed(1)
w = sys.argv[1]
open(w + "/x.f32", "wb").write(struct.pack("2097152f", *[random.gauss(0, 0.02) for _ in range(2097152)]))
open(w + "/ones.f32", "wb").write(struct.pack("4096f", *([1.0] * 4096)))
PY
MB=8.388608  # 512 x 4096 f32
printf "%-8s | %14s | %14s | %s\n" type "llama.cpp 1 thr" "lowbit 2 thr" "per-core ratio"
for t in $TYPES; do
  case $t in
    Q4_K) id=12 ;; Q2_K) id=10 ;; IQ4_XS) id=23 ;; IQ3_S) id=21 ;; IQ3_XXS) id=18 ;;
    IQ2_S) id=22 ;; IQ2_XS) id=17 ;; IQ2_XXS) id=16 ;; IQ1_M) id=29 ;; IQ1_S) id=19 ;; TQ2_0) id=35 ;; TQ1_0) id=34 ;;
    *) echo "unknown type $t" >&2; exit 2 ;;
  esac
  imat=(); case $t in IQ2_XS|IQ2_XXS|IQ1_S) imat=("$W/ones.f32") ;; esac
  start=$(date +%s.%N)
  "$NATIVE" "$LIB" quantize-rows "$id" 512 4096 "$W/x.f32" "$W/q.bin" "${imat[@]}"
  theirs=$(python3 -c "print($MB / ($(date +%s.%N) - $start))")
  ours=$(build/bench/lowbit_bench --benchmark_filter="BM_Quantize/$t/" --benchmark_format=json \
           2>/dev/null | python3 -c "import json,sys; b=json.load(sys.stdin)['benchmarks'][0]; print(b['bytes_per_second']/1e6)")
  printf "%-8s | %9.2f MB/s | %9.2f MB/s | %5.2fx\n" "$t" "$theirs" "$ours" "$(python3 -c "print($ours / 2 / $theirs)")"
done
