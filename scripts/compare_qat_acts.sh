#!/usr/bin/env bash
# Quantization-aware training for rounded activations against post-training quantization:
# MODEL (default tinyllm-8m) is quantized to Q4_0 everywhere by GPTQ (with ROTATE, e.g.
# "--rotate hadamard --rotate-ffn-down", first), then that file is trained by qat against
# the unquantized model with the activations rounded as they will run: W4A8 (--act-bits 8)
# and W4A4KV4 (--act-bits 4 and a q4_0 KV cache; --rotate-kv with ROTATE). Prints the
# perplexity on CHUNKS WikiText-2 windows of 512 of each file as it is trained to run.
# Usage: [MODEL=...] [ROTATE="..."] scripts/compare_qat_acts.sh [CHUNKS] [STEPS] [LR]
CHUNKS=${1:-20}; STEPS=${2:-100}; LR=${3:-3e-5}
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${LOWBIT_SHARED:-../shared}
MODEL=${MODEL:-$SHARED/models/tinyllm-8m}
TEXT=$SHARED/data/wikitext-2/wikitext-2-test.txt
CALIB=$SHARED/data/calibration/calib-en-1mb.txt
LB=${LB:-build/lowbit}
read -r -a ROT <<< "${ROTATE:-}"
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
ppl() {
  $LB perplexity "$1" -f "$TEXT" --chunks "$CHUNKS" -q --json "${@:2}" |
    python3 -c "import json,sys; print(f\"{json.load(sys.stdin)['ppl']:.2f}\")"
}
$LB quantize "$MODEL" -o "$W/gptq.gguf" --type Q4_0 --pure --method gptq "${ROT[@]}" \
  --calib "$CALIB" -q
kv=(); [ ${#ROT[@]} -gt 0 ] && kv=(--rotate-kv)
printf "%-8s | %9s %9s | %s\n" "$(basename "$MODEL") ${ROTATE:-}" fp gptq "qat ($STEPS steps, lr $LR)"
for acts in "--act-bits 8" "--act-bits 4 --cache-type-k q4_0 --cache-type-v q4_0"; do
  read -r -a A <<< "$acts"
  [[ "$acts" == *cache-type* ]] && A+=("${kv[@]}")
  start=$(date +%s)
  $LB quantize "$W/gptq.gguf" -o "$W/qat.gguf" --type Q4_0 --pure --method qat --teacher "$MODEL" \
    --calib "$CALIB" --distill-steps "$STEPS" --distill-lr "$LR" "${A[@]}" -q
  printf "%-8s | %9s %9s | %s (%d s)\n" "$acts" "$(ppl "$MODEL" "${A[@]}")" \
    "$(ppl "$W/gptq.gguf" "${A[@]}")" "$(ppl "$W/qat.gguf" "${A[@]}")" $(( $(date +%s) - start ))
done
