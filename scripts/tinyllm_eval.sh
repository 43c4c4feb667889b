# Sourced by the comparison scripts (compare_methods.sh, compare_budget.sh) after they set
# CHUNKS: the shared assets, a scratch directory W (removed on exit), the bf16 model's
# distributions on CHUNKS WikiText-2 windows of 512 in $W/base.bin, and
#   eval_stats FILE.gguf  ->  "PPL KLD TOP1%" against them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SHARED=${LOWBIT_SHARED:-../shared}
MODEL=${MODEL:-$SHARED/models/tinyllm-8m}
TEXT=$SHARED/data/wikitext-2/wikitext-2-test.txt
CALIB=$SHARED/data/calibration/calib-en-1mb.txt
LB=${LB:-build/lowbit}
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
$LB perplexity "$MODEL" -f "$TEXT" --chunks "$CHUNKS" --save-logits "$W/base.bin" -q --json >/dev/null
eval_stats() {
  $LB perplexity "$1" --kl-divergence "$W/base.bin" -q --json |
    python3 -c "import json,sys; j=json.load(sys.stdin); print(f\"{j['ppl']:.4f} {j['kld_mean']:.6f} {100*j['same_top1']:.2f}\")"
}
tensor_bytes() { python3 -c "import json; print(json.load(open('$1'))['tensor_bytes'])"; }
