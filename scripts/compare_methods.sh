#!/usr/bin/env bash
# Quantizes tinyllm-8m with every lowbit method at the given presets and prints tensor
# bytes, perplexity, mean KL divergence against the bf16 model and same-top-1 on WikiText-2
# (ctx 512), with each run's wall time and peak RSS. The calibrated methods use
# SAMPLES x 512-token windows of the calibration text.
# Usage: scripts/compare_methods.sh [CHUNKS] [SAMPLES] [PRESET...]   (run after setup.sh)
# METHODS lists the methods; a method's extra flags follow it after commas
# (METHODS="awq awq,--awq-clip"); a method given --stats FILE is not handed the calibration text.
CHUNKS=${1:-40}; SAMPLES=${2:-128}; shift 2 || true
PRESETS=${*:-"Q4_K_M Q3_K_M Q2_K"}
METHODS=${METHODS:-"rtn imatrix gptq awq awq+gptq"}
source "$(dirname "$0")/tinyllm_eval.sh"
printf "%-7s %-9s | %9s %9s %9s %7s | %8s %8s\n" preset method bytes ppl kld top1 seconds peak_MB
for p in $PRESETS; do
  for spec in $METHODS; do
    IFS=, read -r -a parts <<< "$spec"
    m=${parts[0]}
    args=(--type "$p" --method "$m" "${parts[@]:1}" -q --json)
    [ "$m" != rtn ] && [[ " ${parts[*]} " != *" --stats "* ]] && args+=(--calib "$CALIB" --calib-samples "$SAMPLES")
    /usr/bin/time -f "%e %M" -o "$W/time" $LB quantize "$MODEL" -o "$W/q.gguf" "${args[@]}" > "$W/report.json"
    read -r secs kb < "$W/time"
    bytes=$(tensor_bytes "$W/report.json")
    read -r ppl kld top < <(eval_stats "$W/q.gguf")
    printf "%-7s %-9s | %9s %9s %9s %7s | %8s %8d\n" "$p" "$spec" "$bytes" "$ppl" "$kld" "$top" "$secs" "$((kb / 1024))"
  done
done
