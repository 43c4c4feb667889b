#!/usr/bin/env bash
# Perplexity of tinyllm-8m quantized in memory to each integer type, through the fp32
# reference engine and through the fast path's integer kernels (packed panels where the CPU
# has AVX-512 VNNI, else the row kernels), on CHUNKS WikiText-2 windows of 512.
#   scripts/fast_vs_reference.sh [CHUNKS] [TYPE...]   (default 30 windows, every type)
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${LOWBIT_SHARED:-../shared}
CHUNKS=${1:-30}; shift || true
TYPES=${*:-"Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL IQ4_XS"}
ppl() {
  build/lowbit perplexity "$SHARED/models/tinyllm-8m" --quantize "$1" --kernels "$2" --blas-batch 0 \
    -f "$SHARED/data/wikitext-2/wikitext-2-test.txt" --chunks "$CHUNKS" -q --json 2>/dev/null |
    sed -n '/^{/,$p' | python3 -c "import json,sys; print(json.load(sys.stdin)['ppl'])"
}
printf "%-7s %12s %12s %9s\n" type reference fast change
for t in $TYPES; do
  ref=$(ppl "$t" reference); fast=$(ppl "$t" fast)
  python3 -c "r, f = $ref, $fast; print(f'%-7s %12.4f %12.4f %+8.4f%%' % ('$t', r, f, 100 * (f / r - 1)))"
done
