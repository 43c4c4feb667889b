#!/usr/bin/env bash
# Quantizes tinyllm-8m with lowbit and with llama.cpp's own quantizer (the libllama that
# node-llama-cpp ships, through build/tests/llamacpp_native) for every preset, and prints
# size, perplexity and KL divergence against the bf16 model on WikiText-2 (ctx 512).
# Usage: scripts/compare_llamacpp_quantizer.sh [CHUNKS] [PRESET...]   (run after setup.sh;
# MODEL=DIR for another model, LB=BINARY for another lowbit build)
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${LOWBIT_SHARED:-../shared}
MODEL=${MODEL:-$SHARED/models/tinyllm-8m}
TEXT=$SHARED/data/wikitext-2/wikitext-2-test.txt
CHUNKS=${1:-40}; shift || true
PRESETS=${*:-"Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_0 Q4_1 Q4_K_S Q4_K_M Q5_0 Q5_1 Q5_K_S Q5_K_M Q6_K Q8_0 IQ4_NL IQ4_XS"}
LB=${LB:-build/lowbit}
LIB=tests/judge/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64
declare -A FTYPE=([Q4_0]=2 [Q4_1]=3 [Q8_0]=7 [Q5_0]=8 [Q5_1]=9 [Q2_K]=10 [Q3_K_S]=11 [Q3_K_M]=12 [Q3_K_L]=13
                  [Q4_K_S]=14 [Q4_K_M]=15 [Q5_K_S]=16 [Q5_K_M]=17 [Q6_K]=18 [IQ4_NL]=25 [IQ4_XS]=30)
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
$LB convert "$MODEL" -o "$W/f32.gguf" --type f32 >/dev/null 2>&1
$LB perplexity "$MODEL" -f "$TEXT" --chunks "$CHUNKS" --save-logits "$W/base.bin" -q --json >/dev/null
stats() {  # file -> "bytes ppl kld top1"
  $LB perplexity "$1" --kl-divergence "$W/base.bin" -q --json |
    python3 -c "import json,sys,os; j=json.load(sys.stdin); print(os.path.getsize('$1'), f\"{j['ppl']:.4f} {j['kld_mean']:.6f} {100*j['same_top1']:.2f}\")"
}
printf "%-7s | %9s %9s %9s %6s | %9s %9s %9s %6s | %7s\n" preset lb_bytes lb_ppl lb_kld lb_top llama_bytes llama_ppl llama_kld top1 "KLD Δ%"
for p in $PRESETS; do
  $LB quantize "$MODEL" -o "$W/lb.gguf" --type "$p" -q
  build/tests/llamacpp_native "$LIB" quantize-model "$W/f32.gguf" "$W/ll.gguf" "${FTYPE[$p]}" 2 >/dev/null 2>&1
  read -r b1 p1 k1 t1 < <(stats "$W/lb.gguf")
  read -r b2 p2 k2 t2 < <(stats "$W/ll.gguf")
  printf "%-7s | %9s %9s %9s %6s | %9s %9s %9s %6s | %+6.1f%%\n" "$p" "$b1" "$p1" "$k1" "$t1" "$b2" "$p2" "$k2" "$t2" \
    "$(python3 -c "print(100*($k1/$k2-1))")"
done
