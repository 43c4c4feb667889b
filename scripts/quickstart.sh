#!/usr/bin/env bash
# Sets lowbit up, then runs the main job on the bundled small model (tinyllm-8m):
# quantize it to Q4_K_M, generate a sample with the quantized file, and evaluate its
# WikiText-2 perplexity and KL divergence against the unquantized (bf16) model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
SHARED=${LOWBIT_SHARED:-../shared}
MODEL=$SHARED/models/tinyllm-8m
TEXT=$SHARED/data/wikitext-2/wikitext-2-test.txt
mkdir -p out
./build/lowbit quantize "$MODEL" -o out/tinyllm-8m-Q4_K_M.gguf --type Q4_K_M -q
./build/lowbit inspect out/tinyllm-8m-Q4_K_M.gguf | tail -n 1
./build/lowbit run out/tinyllm-8m-Q4_K_M.gguf -p "The president said that" -n 48 --temp 0
./build/lowbit perplexity "$MODEL" -f "$TEXT" --chunks 40 --save-logits out/tinyllm-8m-base.logits -q | tail -n 1
./build/lowbit perplexity out/tinyllm-8m-Q4_K_M.gguf --kl-divergence out/tinyllm-8m-base.logits -q | grep -E "PPL|Mean    KLD|Same top"
