#!/usr/bin/env bash
# Budget mixes against the fixed presets at the presets' exact tensor bytes, per method:
# tinyllm-8m, mean KLD against bf16 over CHUNKS WikiText-2 windows of 512.
# Usage: scripts/compare_budget.sh [CHUNKS=40] [SAMPLES=128] [PRESET...]   (METHODS="rtn gptq" to choose)
CHUNKS=${1:-40}; SAMPLES=${2:-128}; shift 2 || true
PRESETS=${*:-"Q4_K_M Q3_K_M"}
METHODS=${METHODS:-"rtn imatrix gptq awq+gptq"}
source "$(dirname "$0")/tinyllm_eval.sh"
kld() { eval_stats "$1" | cut -d' ' -f2; }
printf "%-7s %-9s | %9s %9s | %9s %9s | %7s\n" preset method bytes kld mix_bytes mix_kld "Δ%"
for p in $PRESETS; do
  $LB quantize "$MODEL" -o "$W/p.gguf" --type "$p" -q --json > "$W/p.json"
  budget=$(tensor_bytes "$W/p.json")
  # --bpw counts tensor bytes (--max-size would count the whole file)
  bpw=$(python3 -c "import json; j=json.load(open('$W/p.json')); print(f\"{8*j['tensor_bytes']/j['n_weights']:.12f}\")")
  # one sensitivity measurement and mix per preset size, replayed for every method
  $LB quantize "$MODEL" -o "$W/m.gguf" --type "$p" --bpw "$bpw" --calib "$CALIB" --calib-samples "$SAMPLES" \
    --method rtn --save-recipe "$W/mix-$p.json" -q --json > /dev/null
  for m in $METHODS; do
    calib=(); [ "$m" != rtn ] && calib=(--calib "$CALIB" --calib-samples "$SAMPLES")
    $LB quantize "$MODEL" -o "$W/p.gguf" --type "$p" --method "$m" "${calib[@]}" -q --json > "$W/p.json"
    $LB quantize "$MODEL" -o "$W/m.gguf" --type "$p" --recipe "$W/mix-$p.json" --method "$m" "${calib[@]}" -q --json > "$W/m.json"
    k1=$(kld "$W/p.gguf"); k2=$(kld "$W/m.gguf")
    printf "%-7s %-9s | %9s %9s | %9s %9s | %+6.1f%%\n" "$p" "$m" "$(tensor_bytes "$W/p.json")" "$k1" "$(tensor_bytes "$W/m.json")" "$k2" \
      "$(python3 -c "print(100*($k2/$k1-1))")"
  done
done
