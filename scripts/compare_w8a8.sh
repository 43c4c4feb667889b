#!/usr/bin/env bash
# W8A8 on tinyllm-8m: int8 per-channel weights with int8 activations, without smoothing and
# with SmoothQuant at several migration strengths, per-token (dynamic) and static activation
# scales; int8 weight-only rounding for scale. Prints tensor bytes, PPL, mean KLD against the
# bf16 model and same-top-1 over CHUNKS WikiText-2 windows of 512, and the quantize command's
# wall time and peak RSS. Calibration: SAMPLES x 512-token windows.
# Usage: scripts/compare_w8a8.sh [CHUNKS] [SAMPLES]   (run after setup.sh)
CHUNKS=${1:-40}; SAMPLES=${2:-128}
source "$(dirname "$0")/tinyllm_eval.sh"
printf "%-28s | %9s %9s %9s %7s | %8s %8s\n" method bytes ppl kld top1 seconds peak_MB
run() {
  local label=$1; shift
  rm -rf "$W/q"
  /usr/bin/time -f "%e %M" -o "$W/time" $LB quantize "$MODEL" -o "$W/q" --type int8 "$@" -q --json > "$W/report.json"
  read -r secs kb < "$W/time"
  read -r ppl kld top < <(eval_stats "$W/q")
  printf "%-28s | %9s %9s %9s %7s | %8s %8d\n" "$label" "$(tensor_bytes "$W/report.json")" "$ppl" "$kld" "$top" "$secs" "$((kb / 1024))"
}
CAL=(--calib "$CALIB" --calib-samples "$SAMPLES")
run "int8 weights only (W8A16)" --group 0
run "w8a8 per-token" --method w8a8
run "w8a8 static" --method w8a8 --act-scheme static "${CAL[@]}"
for a in 0.5 0.75 0.85; do
  run "smoothquant a=$a per-token" --method smoothquant --sq-alpha $a "${CAL[@]}"
  run "smoothquant a=$a static" --method smoothquant --sq-alpha $a --act-scheme static "${CAL[@]}"
done
