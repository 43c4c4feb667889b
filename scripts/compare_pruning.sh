#!/usr/bin/env bash
# Pruning on MODEL (default tinyllm-8m): each rule at 50% unstructured and 2:4, in F16 (no
# quantization) and with a GGUF preset, then structured pruning (25% of the FFN channels, one
# KV group per block); perplexity and mean KLD against the unpruned model on CHUNKS WikiText-2
# windows of 512, the file size, and each run's time and peak RSS.
# Usage: scripts/compare_pruning.sh [CHUNKS] [SAMPLES]   (run after setup.sh)
CHUNKS=${1:-40}; SAMPLES=${2:-128}
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${LOWBIT_SHARED:-../shared}
MODEL=${MODEL:-$SHARED/models/tinyllm-8m}
TEXT=$SHARED/data/wikitext-2/wikitext-2-test.txt
CALIB=$SHARED/data/calibration/calib-en-1mb.txt
LB=${LB:-build/lowbit}
PRESETS=${PRESETS:-F16 Q4_K_M}
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
$LB perplexity "$MODEL" -f "$TEXT" --chunks "$CHUNKS" -q --save-logits "$W/base.logits" > /dev/null
row() {  # row PRESET LABEL PATTERN quantize-args...: quantize, evaluate, print one line
  local preset=$1 label=$2 pattern=$3; shift 3
  /usr/bin/time -f "%e %M" -o "$W/time" \
    $LB quantize "$MODEL" -o "$W/p.gguf" --type "$preset" "$@" -q
  read -r secs rss < "$W/time"
  read -r ppl kld <<< "$($LB perplexity "$W/p.gguf" --kl-divergence "$W/base.logits" -q --json |
    python3 -c "import json,sys; r=json.load(sys.stdin)
print(f\"{r['ppl']:.3f} {r['kld_mean']:.5f}\")")"
  printf "%-8s %-12s %-7s | %9s %9s %10s %7s %8s\n" "$preset" "$label" "$pattern" "$ppl" "$kld" \
    "$(stat -c %s "$W/p.gguf")" "$secs" "$((rss / 1024))"
}
cal=(--calib "$CALIB" --calib-samples "$SAMPLES")
printf "%-8s %-12s %-7s | %9s %9s %10s %7s %8s\n" \
  preset rule pattern PPL KLD bytes seconds "RSS MiB"
for preset in $PRESETS; do
  row "$preset" dense "" --method rtn
  [ "$preset" != F16 ] && row "$preset" dense-gptq "" --method gptq "${cal[@]}"
  for pattern in "--sparsity 0.5" "--nm 2:4"; do
    read -r -a p <<< "$pattern"
    row "$preset" magnitude "${p[1]}" --method rtn "${p[@]}"
    row "$preset" wanda "${p[1]}" --method imatrix "${cal[@]}" "${p[@]}"
    row "$preset" sparsegpt "${p[1]}" --method gptq "${cal[@]}" "${p[@]}"
  done
done
row F16 ffn-norms 25% --method rtn --prune-ffn 0.25
row F16 ffn-calib 25% --method rtn --prune-ffn 0.25 "${cal[@]}"
row F16 kv-calib 1grp --method rtn --prune-kv-groups 1 "${cal[@]}"
row Q4_K_M ffn-calib 25% --method gptq --prune-ffn 0.25 "${cal[@]}"
