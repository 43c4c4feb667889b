#!/usr/bin/env bash
# GPTQ/AWQ checkpoints written by lowbit and their GGUF conversions on MODEL (default
# tinyllm-8m): for each int type, GPTQ (calibrated) into lowbit's layout and GPTQ's, then
# `convert` of the GPTQ checkpoint to GGUF (codes kept where a block type holds the grid,
# rounded again otherwise). Perplexity and mean KLD against the unquantized model on CHUNKS
# WikiText-2 windows of 512, and the size of each file.
# Usage: scripts/compare_hf_formats.sh [CHUNKS] [SAMPLES]   (run after setup.sh)
#   TYPES="int4:128 int4:128:asym int3:128 int8:0" (the default): type:group[:asym].
CHUNKS=${1:-40}; SAMPLES=${2:-128}
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${LOWBIT_SHARED:-../shared}
MODEL=${MODEL:-$SHARED/models/tinyllm-8m}
TEXT=$SHARED/data/wikitext-2/wikitext-2-test.txt
CALIB=$SHARED/data/calibration/calib-en-1mb.txt
LB=${LB:-build/lowbit}
TYPES=${TYPES:-int4:128 int4:128:asym int3:128 int8:0}
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
$LB perplexity "$MODEL" -f "$TEXT" --chunks "$CHUNKS" -q --save-logits "$W/base.logits" > /dev/null
measure() {  # measure LABEL PATH: perplexity, KLD and size of one file or directory
  read -r ppl kld <<< "$($LB perplexity "$2" -f "$TEXT" --chunks "$CHUNKS" \
    --kl-divergence "$W/base.logits" -q --json |
    python3 -c "import json,sys; r=json.load(sys.stdin)
print(f\"{r['ppl']:.4f} {r['kld_mean']:.6f}\")")"
  printf "%-26s | %10s %10s %10s\n" "$1" "$ppl" "$kld" "$(du -sb "$2" | cut -f1)"
}
printf "%-26s | %10s %10s %10s\n" "file" "PPL" "KLD" "bytes"
for spec in $TYPES; do
  IFS=: read -r type group asym <<< "$spec"
  flags=(--type "$type" --group "$group" --method gptq --calib "$CALIB" --calib-samples "$SAMPLES")
  [[ -n "$asym" ]] && flags+=(--asym)
  label="$type g$group${asym:+ asym}"
  for format in lowbit gptq; do
    $LB quantize "$MODEL" -o "$W/$format" --format "$format" "${flags[@]}" -q
    measure "$label $format" "$W/$format"
  done
  $LB convert "$W/gptq" -o "$W/gptq.gguf" -q 2> "$W/convert.log"
  measure "$label gptq -> gguf" "$W/gptq.gguf"
  grep -o "([0-9]* linears.*)" "$W/convert.log" || true
  rm -rf "$W/lowbit" "$W/gptq" "$W/gptq.gguf"
done
