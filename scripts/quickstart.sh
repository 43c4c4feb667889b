#!/usr/bin/env bash
# Sets lowbit up, then runs the main job on the bundled small model (tinyllm-8m):
# convert to GGUF, generate a sample, evaluate WikiText-2 perplexity.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
SHARED=${LOWBIT_SHARED:-../shared}
mkdir -p out
./build/lowbit convert "$SHARED/models/tinyllm-8m" -o out/tinyllm-8m-f16.gguf --type f16
./build/lowbit inspect out/tinyllm-8m-f16.gguf | tail -n 1
./build/lowbit run out/tinyllm-8m-f16.gguf -p "The president said that" -n 48 --temp 0
./build/lowbit perplexity out/tinyllm-8m-f16.gguf -f "$SHARED/data/wikitext-2/wikitext-2-test.txt" --chunks 40 | tail -n 1
