#!/usr/bin/env bash
# Pruning on MODEL (default tinyllm-8m): each rule at 50% unstructured and 2:4, in F16 (no
# quantization) and with a GGUF preset, then perplexity and mean KLD against the unpruned model
# on CHUNKS WikiText-2 windows of 512, file size and the time of each run.
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
eval_file() {  # prints "ppl kld"
  $LB perplexity "$1" --kl-divergence "$W/base.logits" -q --json |
    python3 -c "import json,sys; r=json.load(sys.stdin); print(f\"{r['ppl']:.3f} {r['kld_mean']:.5f}\")"
}
printf "%-8s %-10s %-6s | %9s %9s %10s %7s\n" preset rule pattern PPL KLD bytes seconds
for preset in $PRESETS; do
  for pattern in none "--sparsity 0.5" "--nm 2:4"; do
    for rule in magnitude wanda sparsegpt; do
      [ "$pattern" = none ] && [ "$rule" != magnitude ] && continue
      case $rule in
        magnitude) args=(--method rtn) ;;
        wanda) args=(--method imatrix --calib "$CALIB" --calib-samples "$SAMPLES") ;;
        sparsegpt) args=(--method gptq --calib "$CALIB" --calib-samples "$SAMPLES") ;;
      esac
      label=$rule; p=(); [ "$pattern" != none ] && read -r -a p <<< "$pattern"
      [ "$pattern" = none ] && label=dense
      start=$(date +%s.%N)
      $LB quantize "$MODEL" -o "$W/p.gguf" --type "$preset" "${args[@]}" "${p[@]}" -q
      secs=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
      read -r ppl kld <<< "$(eval_file "$W/p.gguf")"
      printf "%-8s %-10s %-6s | %9s %9s %10s %7s\n" "$preset" "$label" "${p[1]:-}" "$ppl" "$kld" \
        "$(stat -c %s "$W/p.gguf")" "$secs"
    done
  done
done
