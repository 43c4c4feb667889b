#!/usr/bin/env bash
# Quantizes tinyllm-8m with every lowbit method at the given presets and prints tensor
# bytes, perplexity, mean KL divergence against the bf16 model and same-top-1 on WikiText-2
# (ctx 512), with each run's wall time and peak RSS. The calibrated methods use
# SAMPLES x 512-token windows of the calibration text.
# Usage: scripts/compare_methods.sh [CHUNKS] [SAMPLES] [PRESET...]   (run after setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${LOWBIT_SHARED:-../shared}
MODEL=$SHARED/models/tinyllm-8m
TEXT=$SHARED/data/wikitext-2/wikitext-2-test.txt
CALIB=$SHARED/data/calibration/calib-en-1mb.txt
CHUNKS=${1:-40}; SAMPLES=${2:-128}; shift 2 || true
PRESETS=${*:-"Q4_K_M Q3_K_M Q2_K"}
METHODS=${METHODS:-"rtn imatrix gptq awq awq+gptq"}
LB=build/lowbit
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
$LB perplexity "$MODEL" -f "$TEXT" --chunks "$CHUNKS" --save-logits "$W/base.bin" -q --json >/dev/null
printf "%-7s %-9s | %9s %9s %9s %7s | %8s %8s\n" preset method bytes ppl kld top1 seconds peak_MB
for p in $PRESETS; do
  for m in $METHODS; do
    args=(--type "$p" --method "$m" -q --json)
    [ "$m" != rtn ] && args+=(--calib "$CALIB" --calib-samples "$SAMPLES")
    /usr/bin/time -f "%e %M" -o "$W/time" $LB quantize "$MODEL" -o "$W/q.gguf" "${args[@]}" > "$W/report.json"
    read -r secs kb < "$W/time"
    bytes=$(python3 -c "import json; print(json.load(open('$W/report.json'))['tensor_bytes'])")
    $LB perplexity "$W/q.gguf" --kl-divergence "$W/base.bin" -q --json |
      python3 -c "import json,sys; j=json.load(sys.stdin); print(f\"{j['ppl']:.4f} {j['kld_mean']:.6f} {100*j['same_top1']:.2f}\")" > "$W/stats"
    read -r ppl kld top < "$W/stats"
    printf "%-7s %-9s | %9s %9s %9s %7s | %8s %8d\n" "$p" "$m" "$bytes" "$ppl" "$kld" "$top" "$secs" "$((kb / 1024))"
  done
done
