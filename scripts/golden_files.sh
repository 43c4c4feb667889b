#!/usr/bin/env bash
# Writes one file per quantization job of the main job's matrix (methods × presets, a size
# budget mix, int4 g128, W8A8) on tinyllm-8m with the given lowbit binary, and prints
# "sha256  name" for each. Two builds agree when their outputs print the same lines:
#   scripts/golden_files.sh build/lowbit /tmp/golden > now.sha256
#   diff tests/golden/tinyllm-8m.sha256 now.sha256
# Small calibration (16 windows of 256 tokens) keeps it to a few minutes on 2 cores.
set -euo pipefail
BIN=$(realpath "$1")
OUT=$2
SHARED=${LOWBIT_SHARED:-$(dirname "$0")/../../shared}
MODEL=$SHARED/models/tinyllm-8m
CALIB=$SHARED/data/calibration/calib-en-1mb.txt
[ -d "$MODEL" ] || { echo "golden_files: missing $MODEL (set LOWBIT_SHARED)" >&2; exit 1; }
# OpenBLAS picks its kernels by CPU (an AVX-512 EPYC gets other last bits of GPTQ's and the
# calibration's sums than an AVX2 one); the hashes were taken with its Haswell kernels.
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}
mkdir -p "$OUT"
C=(--calib "$CALIB" --calib-samples 16 --calib-ctx 256 -t 2 -q)
q() { local name=$1; shift; "$BIN" quantize "$MODEL" -o "$OUT/$name" "$@"; }
for preset in Q4_K_M Q3_K_M; do
  q "rtn-$preset.gguf" --type "$preset" --method rtn -t 2 -q
  for method in imatrix gptq awq awq+gptq; do
    q "$method-$preset.gguf" --type "$preset" --method "$method" "${C[@]}"
  done
done
q "mix-4MB.gguf" --max-size 4200000 --method rtn "${C[@]}"
q "int4-g128" --type int4 --group 128 -t 2 -q
q "w8a8-smoothquant" --type int8 --method smoothquant "${C[@]}"
cd "$OUT"
for f in *.gguf; do sha256sum "$f"; done
for d in int4-g128 w8a8-smoothquant; do
  for f in "$d"/*; do sha256sum "$f"; done
done
