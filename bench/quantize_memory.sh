#!/usr/bin/env bash
# Peak RSS and wall time of `lowbit quantize` on a generated 1B-parameter-shaped model
# (bf16 GGUF, Llama-3.2-1B shapes) with 2 threads. The model file (~2.5 GB) is generated
# once into ${LOWBIT_BENCH_DIR:-/tmp/lowbit-bench}.
# Usage: bench/quantize_memory.sh [TYPE...]     (default: Q4_K_M Q8_0)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${LOWBIT_BENCH_DIR:-/tmp/lowbit-bench}
mkdir -p "$DIR"
MODEL=$DIR/llama-1b-bf16.gguf
[ -f "$MODEL" ] || build/bench/lowbit_make_synthetic "$MODEL" llama-1b bf16
TYPES=${*:-"Q4_K_M Q8_0"}
printf "%-8s %10s %12s %10s %12s\n" type seconds "peak RSS MB" "file MB" "MB/s (bf16 in)"
for t in $TYPES; do
  /usr/bin/time -f "%e %M" -o "$DIR/time.txt" build/lowbit quantize "$MODEL" -o "$DIR/out.gguf" --type "$t" -t 2 -q
  read -r secs kb < "$DIR/time.txt"
  in_mb=$(( $(stat -c %s "$MODEL") / 1048576 ))
  out_mb=$(( $(stat -c %s "$DIR/out.gguf") / 1048576 ))
  printf "%-8s %10s %12s %10s %12.1f\n" "$t" "$secs" "$((kb / 1024))" "$out_mb" "$(python3 -c "print($in_mb/$secs)")"
done
rm -f "$DIR/out.gguf"
