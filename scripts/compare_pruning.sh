#!/usr/bin/env bash
# Pruning on MODEL (default tinyllm-8m): each rule at 50% unstructured and 2:4, in F16 (no
# quantization) and with a GGUF preset, then structured pruning (25% of the FFN channels, one
# KV group per block; with and without distillation from the unpruned model, DISTILL_STEPS at
# DISTILL_LR); perplexity and mean KLD against the unpruned model on CHUNKS WikiText-2
# windows of 512, the file size, and each run's time and peak RSS; last, SparseGPT 2:4 in the
# packed 2:4 types against their dense twins; OWL's per-block shares at 50% and 70%.
# Usage: scripts/compare_pruning.sh [CHUNKS] [SAMPLES]   (run after setup.sh)
#   SECTIONS="unstructured owl structured packed" (the default) chooses the parts to run.
CHUNKS=${1:-40}; SAMPLES=${2:-128}
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${LOWBIT_SHARED:-../shared}
MODEL=${MODEL:-$SHARED/models/tinyllm-8m}
TEXT=$SHARED/data/wikitext-2/wikitext-2-test.txt
CALIB=$SHARED/data/calibration/calib-en-1mb.txt
LB=${LB:-build/lowbit}
PRESETS=${PRESETS:-F16 Q4_K_M}
SECTIONS=${SECTIONS:-unstructured owl structured packed}
DISTILL_STEPS=${DISTILL_STEPS:-200}; DISTILL_LR=${DISTILL_LR:-3e-5}  # structured + distillation
has() { [[ " $SECTIONS " == *" $1 "* ]]; }
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
if has unstructured; then
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
fi
if has owl; then
  for ratio in 0.5 0.7; do
    for owl in "" 0.05 0.1; do
      o=(); label=uniform
      [ -n "$owl" ] && o=(--owl "$owl") && label="owl-$owl"
      row F16 "wanda-$label" "$ratio" --method imatrix "${cal[@]}" --sparsity "$ratio" "${o[@]}"
      row F16 "sgpt-$label" "$ratio" --method gptq "${cal[@]}" --sparsity "$ratio" "${o[@]}"
    done
  done
fi
if has structured; then
  row F16 ffn-norms 25% --method rtn --prune-ffn 0.25
  row F16 ffn-calib 25% --method rtn --prune-ffn 0.25 "${cal[@]}"
  row F16 kv-calib 1grp --method rtn --prune-kv-groups 1 "${cal[@]}"
  row Q4_K_M ffn-calib 25% --method gptq --prune-ffn 0.25 "${cal[@]}"
  kd=(--distill-steps "$DISTILL_STEPS" --distill-lr "$DISTILL_LR")
  row F16 ffn-calib-kd 25% --method rtn --prune-ffn 0.25 "${cal[@]}" "${kd[@]}"
  row F16 kv-calib-kd 1grp --method rtn --prune-kv-groups 1 "${cal[@]}" "${kd[@]}"
  row Q4_K_M ffn-calib-kd 25% --method gptq --prune-ffn 0.25 "${cal[@]}" "${kd[@]}"
fi
if has packed; then
  for preset in Q8_0 Q8_0_S24 Q4_0 Q4_0_S24; do
    row "$preset" sparsegpt 2:4 --method gptq "${cal[@]}" --nm 2:4
  done
  row Q4_0 dense-gptq "" --method gptq "${cal[@]}"
fi
