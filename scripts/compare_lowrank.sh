#!/usr/bin/env bash
# Low-rank branches (SVDQuant, --lowrank R) against files of equal bytes without them: MODEL
# (default tinyllm-8m-outliers) quantized to Q4_0 everywhere with rtn, with rank-R branches,
# and with Q4_0 plus higher-bit tensors that spend the branch's bytes instead. Prints each
# file's bytes and the mean KLD against the unquantized model on CHUNKS WikiText-2 windows of
# 512, with 16-bit activations (W4A16) and with every linear input rounded per token to 4
# bits (W4A4; the branches read the unrounded inputs). Branches alone, after SmoothQuant's
# smoothing (--lowrank-alpha) and after a rotation; the mixes spend a rank-8 / rank-16
# branch's bytes on Q5_0 / Q8_0 and Q6_K tensors instead.
# Usage: scripts/compare_lowrank.sh [CHUNKS]   (run after setup.sh)
CHUNKS=${1:-20}
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${LOWBIT_SHARED:-../shared}
MODEL=${MODEL:-$SHARED/models/tinyllm-8m-outliers}
TEXT=$SHARED/data/wikitext-2/wikitext-2-test.txt
CALIB=$SHARED/data/calibration/calib-en-1mb.txt
LB=${LB:-build/lowbit}
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
$LB perplexity "$MODEL" -f "$TEXT" --chunks "$CHUNKS" -q --save-logits "$W/fp.logits" > /dev/null
kld() {
  $LB perplexity "$1" --kl-divergence "$W/fp.logits" -q --json "${@:2}" |
    python3 -c "import json,sys; print(f\"{json.load(sys.stdin)['kld_mean']:.5f}\")"
}
M8='--tensor-type .*ffn_(gate|up|down)\.weight=Q5_0 --tensor-type .*attn_k\.weight=Q5_0'
M16='--tensor-type .*attn_(q|k|v|output)\.weight=Q8_0 --tensor-type .*ffn_down\.weight=Q6_K'
ROT='--rotate hadamard --rotate-ffn-down'
SMOOTH="--lowrank-alpha 0.5 --calib $CALIB --calib-samples 64"
printf "%-44s | %9s | %8s %8s\n" "file (Q4_0 --pure, rtn)" bytes W4A16 W4A4
# (--lowrank 1: smoothing with a branch of rank 1, about 80 kB: the smoothing alone)
SPECS=("" "--lowrank 8" "--lowrank 16" "--lowrank 8 $SMOOTH" "--lowrank 16 $SMOOTH" "$M8" "$M16"
       "--lowrank 1 $SMOOTH" "--lowrank 1 $SMOOTH $M8" "--lowrank 1 $SMOOTH $M16"
       "$ROT" "$ROT --lowrank 8" "$ROT $M8")
for spec in "${SPECS[@]}"; do
  read -r -a extra <<< "$spec"
  $LB quantize "$MODEL" -o "$W/q.gguf" --type Q4_0 --pure --method rtn "${extra[@]}" -q
  label=${spec//$CALIB/CALIB}; label=${label//"$M8"/mix of r=8 bytes}
  label=${label//"$M16"/mix of r=16 bytes}
  printf "%-44s | %9s | %8s %8s\n" "${label:-(none)}" "$(stat -c %s "$W/q.gguf")" \
    "$(kld "$W/q.gguf")" "$(kld "$W/q.gguf" --act-bits 4)"
done
