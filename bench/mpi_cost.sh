#!/usr/bin/env bash
# Wall time and peak RSS of each rank for calibration, static and sequential GPTQ, one
# process (all cores) against `mpirun -np 2` (the cores shared), on the generated 1B shapes;
# checks that both wrote the same bytes.
# Usage: [STEPS="calibrate hessian static sequential"] \
#          bench/mpi_cost.sh [WINDOWS=8] [CTX=512] [BLOCKS=2]
#   calibrate (no Hessians) runs on the whole 16-block model; calibrate --hessian and
#   quantize --method gptq (--stats, or on the text block by block) on a model of BLOCKS
#   blocks of the same widths (their cost is per block). Models are generated once into
#   ${LOWBIT_BENCH_DIR:-/tmp/lowbit-bench}.
set -euo pipefail
cd "$(dirname "$0")/.."
WINDOWS=${1:-8}; CTX=${2:-512}; BLOCKS=${3:-2}
STEPS=${STEPS:-calibrate hessian static sequential}
step() { [[ " $STEPS " == *" $1 "* ]]; }
DIR=${LOWBIT_BENCH_DIR:-/tmp/lowbit-bench}
CALIB=${LOWBIT_SHARED:-../shared}/data/calibration/calib-en-1mb.txt
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mkdir -p "$DIR"
BIG=$DIR/llama-1b-bf16.gguf
FEW=$DIR/llama-1b-${BLOCKS}blocks-bf16.gguf
[ -f "$BIG" ] || build/bench/lowbit_make_synthetic "$BIG" llama-1b bf16
[ -f "$FEW" ] || build/bench/lowbit_make_synthetic "$FEW" llama-1b bf16 "$BLOCKS"
TIME=(/usr/bin/time -f "%e s, %M KB")

# run LABEL RANKS OUT ARGS...: prints "LABEL ranks=N: wall s; rank k: s, peak RSS MiB".
run() {
  local label=$1 ranks=$2 out=$3; shift 3
  rm -f "$out"
  local t0 t1 log=$DIR/mpi_cost.log
  t0=$(date +%s.%N)
  if [ "$ranks" = 1 ]; then
    "${TIME[@]}" -o "$log.0" build/lowbit "$@" -o "$out" -q >/dev/null
  else
    mpirun -np "$ranks" sh -c "exec /usr/bin/time -f '%e s, %M KB' -o $log.\$OMPI_COMM_WORLD_RANK \
      build/lowbit $* -o $out -q" >/dev/null
  fi
  t1=$(date +%s.%N)
  local line
  line=$(printf "%-34s ranks=%s: wall %6.1f s" "$label" "$ranks" "$(echo "$t1 - $t0" | bc)")
  for ((k = 0; k < ranks; ++k)); do
    line+=$(awk -v k="$k" '{printf "; rank %d: %s s, %.0f MiB", k, $1, $3 / 1024}' "$log.$k")
  done
  echo "$line"
}

same() { cmp -s "$1" "$2" && echo "  same bytes: $(basename "$1")" || echo "  DIFFERENT: $1 $2"; }

if step calibrate; then
  for n in 1 2; do
    run "calibrate ${WINDOWS}x${CTX} (16 blocks)" "$n" "$DIR/imatrix-$n.gguf" calibrate "$BIG" \
      --calib "$CALIB" --calib-samples "$WINDOWS" --calib-ctx "$CTX"
  done
  same "$DIR/imatrix-1.gguf" "$DIR/imatrix-2.gguf"
fi
if step hessian || step static; then
  for n in 1 2; do
    run "calibrate --hessian ($BLOCKS blocks)" "$n" "$DIR/hessian-$n.gguf" calibrate "$FEW" \
      --calib "$CALIB" --calib-samples "$WINDOWS" --calib-ctx "$CTX" --hessian
  done
  same "$DIR/hessian-1.gguf" "$DIR/hessian-2.gguf"
fi
if step static; then
  for n in 1 2; do
    run "gptq --stats Q4_K_M ($BLOCKS blocks)" "$n" "$DIR/gptq-$n.gguf" quantize "$FEW" \
      --type Q4_K_M --method gptq --stats "$DIR/hessian-1.gguf"
  done
  same "$DIR/gptq-1.gguf" "$DIR/gptq-2.gguf"
fi
if step sequential; then
  for n in 1 2; do
    run "sequential gptq Q4_K_M ($BLOCKS blocks)" "$n" "$DIR/seq-$n.gguf" quantize "$FEW" \
      --type Q4_K_M --method gptq --calib "$CALIB" --calib-samples "$WINDOWS" --calib-ctx "$CTX"
  done
  same "$DIR/seq-1.gguf" "$DIR/seq-2.gguf"
fi
