#!/usr/bin/env bash
# Wall time, time per block and peak RSS of each quantization method (lowbit_method_cost)
# on tinyllm-8m and on the generated 1B-shaped model (2 threads, random calibration tokens).
# Usage: bench/method_cost.sh [WINDOWS=8] [CTX=256] [METHOD...]   (the 1B model, ~2.5 GB,
# is generated once into ${LOWBIT_BENCH_DIR:-/tmp/lowbit-bench})
set -euo pipefail
cd "$(dirname "$0")/.."
WINDOWS=${1:-8}; CTX=${2:-256}; shift 2 || true
METHODS=${*:-"rtn imatrix gptq awq awq+gptq"}
DIR=${LOWBIT_BENCH_DIR:-/tmp/lowbit-bench}
mkdir -p "$DIR"
BIG=$DIR/llama-1b-bf16.gguf
[ -f "$BIG" ] || build/bench/lowbit_make_synthetic "$BIG" llama-1b bf16
for model in "${LOWBIT_SHARED:-../shared}/models/tinyllm-8m" "$BIG"; do
  for m in $METHODS; do
    build/bench/lowbit_method_cost "$model" "$m" Q4_K_M "$WINDOWS" "$CTX" 2 2>/dev/null | tail -n 1 | sed "s|^|$(basename "$model"): |"
  done
done
