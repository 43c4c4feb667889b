#!/usr/bin/env bash
# Peak RSS of the main job on a generated model with Llama-3.2-1B shapes (bf16 GGUF, 1.24 B
# weights, hidden 2048, FFN 8192, 16 layers, vocab 128,256, tied embeddings), next to the
# memory formula of each method. The model (~2.5 GB) is generated once into
# ${LOWBIT_BENCH_DIR:-/tmp/lowbit-bench}.
# Usage: bench/pipeline_memory.sh [GPTQ_WINDOWS] [CTX]    (default 128 windows of 512 tokens)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-128}
T=${2:-512}
DIR=${LOWBIT_BENCH_DIR:-/tmp/lowbit-bench}
mkdir -p "$DIR"
MODEL=$DIR/llama-1b-bf16.gguf
CALIB=${LOWBIT_SHARED:-../shared}/data/calibration/calib-en-1mb.txt
[ -f "$MODEL" ] || build/bench/lowbit_make_synthetic "$MODEL" llama-1b bf16
MB=1048576
run() {  # run NAME ARGS...: wall seconds and peak RSS (MB) of one quantize
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$DIR/time.txt" build/lowbit quantize "$MODEL" -o "$DIR/out.gguf" -t 2 -q "$@"
  read -r secs kb < "$DIR/time.txt"
  printf "%-28s %8s s  peak RSS %6d MB  file %5d MB\n" "$name" "$secs" "$((kb / 1024))" "$(($(stat -c %s "$DIR/out.gguf") / MB))"
  rm -f "$DIR/out.gguf"
}
D=2048 F=8192 L=16
# RTN: one chunk of rows as f32 (16 Mi values), its quantized bytes and its source pages,
# or a whole q/k matrix (D x D) when its rows move to llama.cpp's RoPE layout.
echo "rtn Q4_K_M: formula ~ 16 Mi x 4 B (f32 chunk) x 2 (rounding scratch) + D^2 x 4 B + process = $(( (16*MB*4*2 + D*D*4) / MB + 60 )) MB"
run "rtn Q4_K_M" --type Q4_K_M
# GPTQ, block by block. Always held: the calibration activations W x T x D x 4 B, the KV
# cache of the 2048-token context and the block's Hessians (Σ cols² x 8 B over its 7
# linears: 6 x D² + F²). On top, while collecting: one window's x xᵀ in f32 (F² x 4 B);
# while rounding ffn_down: GPTQ's factor of H⁻¹ (F² x 8 B; H itself is moved in), H in f32
# for the error report (F² x 4 B) and the block's weights in f32.
acts=$(( W * T * D * 4 / MB )); kv=$(( 2 * L * 2048 * 512 * 4 / MB )); hess=$(( (6 * D * D + F * F) * 8 / MB ))
collect=$(( F * F * 4 / MB )); wts=$(( (2 * D * D + 2 * D * 512 + 3 * D * F) * 4 / MB ))
round=$(( F * F * 8 / MB + F * F * 4 / MB + wts ))
extra=$(( collect > round ? collect : round ))
echo "gptq Q4_K_M ${W}x${T}: formula ~ activations $acts + KV $kv + Hessians $hess + max(collect $collect, round $round) + process 60 = $(( acts + kv + hess + extra + 60 )) MB"
run "gptq Q4_K_M ${W}x${T}" --type Q4_K_M --method gptq --calib "$CALIB" --calib-samples "$W" --calib-ctx "$T"
