#!/usr/bin/env bash
# W4A4 with a 4-bit KV cache, with and without rotations: quantizes MODEL (default
# tinyllm-8m-outliers) to Q4_0 everywhere with each rotation and method, then prints the
# perplexity on CHUNKS WikiText-2 windows of 512 with 16-bit activations (W4A16) and with
# every linear input rounded per token to 4 bits and a q4_0 KV cache (W4A4KV4, simulated in
# the engine: --act-bits 4 --cache-type-k q4_0 --cache-type-v q4_0, --rotate-kv when the
# model is rotated).
# Usage: scripts/compare_w4a4.sh [CHUNKS] [SAMPLES]   (run after setup.sh)
CHUNKS=${1:-20}; SAMPLES=${2:-128}
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${LOWBIT_SHARED:-../shared}
MODEL=${MODEL:-$SHARED/models/tinyllm-8m-outliers}
TEXT=$SHARED/data/wikitext-2/wikitext-2-test.txt
CALIB=$SHARED/data/calibration/calib-en-1mb.txt
LB=${LB:-build/lowbit}
CLIP=${CLIP:-1.0}
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
ppl() {
  $LB perplexity "$1" -f "$TEXT" --chunks "$CHUNKS" -q --json "${@:2}" |
    python3 -c "import json,sys; print(f\"{json.load(sys.stdin)['ppl']:.2f}\")"
}
A4=(--act-bits 4 --act-clip "$CLIP" --cache-type-k q4_0 --cache-type-v q4_0)
printf "%-26s | %9s %9s\n" "weights (Q4_0)" W4A16 W4A4KV4
printf "%-26s | %9s %9s\n" "none (bf16 weights)" "$(ppl "$MODEL")" "$(ppl "$MODEL" "${A4[@]}")"
for spec in "rtn" "gptq" "rtn --rotate hadamard" "rtn --rotate hadamard --rotate-ffn-down" \
            "gptq --rotate hadamard --rotate-ffn-down" "gptq --rotate random --rotate-ffn-down"; do
  read -r -a parts <<< "$spec"
  args=(--type Q4_0 --pure --method "${parts[0]}" "${parts[@]:1}" -q)
  [ "${parts[0]}" = gptq ] && args+=(--calib "$CALIB" --calib-samples "$SAMPLES")
  $LB quantize "$MODEL" -o "$W/q.gguf" "${args[@]}"
  kv=(); [[ "$spec" == *--rotate* ]] && kv=(--rotate-kv)
  printf "%-26s | %9s %9s\n" "$spec" "$(ppl "$W/q.gguf")" "$(ppl "$W/q.gguf" "${A4[@]}" "${kv[@]}")"
done
