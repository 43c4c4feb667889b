#!/usr/bin/env bash
# Generation and prompt-processing speed on the synthetic 1B model (Llama-3.2-1B shapes) for
# F16, Q8_0 and Q4_K_M with 2 threads, as `lowbit bench --json` reports them.
#   bash bench/speed_1b.sh [OUT_DIR]    (default: build/speed-1b; takes ~15 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-build/speed-1b}
mkdir -p "$OUT"
for type in F16 Q8_0 Q4_K_M; do
  echo "== $type"
  build/lowbit bench --synthetic llama-1b --type "$type" -p 512 -n 128 -t 2 -r 5 --json > "$OUT/$type.json"
  python3 - "$OUT/$type.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
print(f"{j['model']}: {j['model_bytes']/1e9:.3f} GB; pp{j['n_prompt']} {j['pp_tps']:.2f} ± {j['pp_sd']:.2f} t/s "
      f"(reference {j['reference_pp_tps']:.2f}); tg{j['n_gen']} {j['tg_tps']:.2f} ± {j['tg_sd']:.2f} t/s; "
      f"probe {j['bandwidth_gbs']:.2f} GB/s, bound {j['tg_bound_tps']:.2f} t/s, {100*j['tg_bandwidth_fraction']:.0f}% of it")
PY
done
