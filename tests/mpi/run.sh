#!/usr/bin/env bash
# The distributed job against one process: run.sh LOWBIT_CLI DEFAULT_SHARED_DIR
# Under `mpirun -np 2|3 --oversubscribe` on this machine, calibrate and quantize must write
# the bytes one process writes; a method that cannot be split and a rank that dies must stop
# the job with a clear message and no output.
set -euo pipefail
lowbit=$1
shared=${LOWBIT_SHARED:-$2}
model=$shared/models/tinyllm-8m
calib=$shared/data/calibration/calib-en-1mb.txt
for f in "$model/config.json" "$calib"; do
  [ -e "$f" ] || { echo "mpi test: missing asset $f (set LOWBIT_SHARED)"; exit 1; }
done
command -v mpirun >/dev/null || { echo "mpi test: mpirun not found (scripts/setup.sh installs it)"; exit 1; }
# Root (CI) needs OpenMPI's consent; more ranks than cores needs --oversubscribe.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none  # containers may forbid CMA

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
ranks() { local n=$1; shift; mpirun -np "$n" "$lowbit" "$@"; }
same() {
  cmp "$1" "$2" || { echo "FAIL: $3: $2 differs from the one-process $1"; exit 1; }
  echo "ok: $3"
}

small=(--calib "$calib" --calib-samples 7 --calib-ctx 96 -q)
"$lowbit" calibrate "$model" "${small[@]}" --hessian -o "$dir/h1.gguf"
ranks 2 calibrate "$model" "${small[@]}" --hessian -o "$dir/h2.gguf"
ranks 3 calibrate "$model" "${small[@]}" --hessian -o "$dir/h3.gguf"
same "$dir/h1.gguf" "$dir/h2.gguf" "calibrate --hessian, 2 ranks"
same "$dir/h1.gguf" "$dir/h3.gguf" "calibrate --hessian, 3 ranks (7 windows)"
"$lowbit" calibrate "$model" "${small[@]}" -o "$dir/i1.gguf"
ranks 2 calibrate "$model" "${small[@]}" -o "$dir/i2.gguf"
same "$dir/i1.gguf" "$dir/i2.gguf" "calibrate, 2 ranks"

check_quantize() {
  local label=$1; shift
  "$lowbit" quantize "$model" -q "$@" -o "$dir/q1.gguf" >/dev/null
  ranks 2 quantize "$model" -q "$@" -o "$dir/q2.gguf" >/dev/null
  same "$dir/q1.gguf" "$dir/q2.gguf" "quantize $label, 2 ranks"
  rm -f "$dir/q1.gguf" "$dir/q2.gguf"
}
check_quantize "rtn Q4_K_M" --type Q4_K_M
check_quantize "imatrix Q3_K_M" --type Q3_K_M --method imatrix --stats "$dir/i1.gguf"
check_quantize "static gptq Q4_K_M" --type Q4_K_M --method gptq --stats "$dir/h1.gguf"
check_quantize "static gptq 2:4 sparsegpt" --type Q4_0 --method gptq --stats "$dir/h1.gguf" \
  --nm 2:4 --prune sparsegpt

# Sequential GPTQ: each block's windows and linears split over the ranks.
seq=(--type Q4_K_M --method gptq "${small[@]}")
"$lowbit" quantize "$model" "${seq[@]}" -o "$dir/s1.gguf" >/dev/null
ranks 2 quantize "$model" "${seq[@]}" -o "$dir/s2.gguf" >/dev/null
ranks 3 quantize "$model" "${seq[@]}" -o "$dir/s3.gguf" >/dev/null
same "$dir/s1.gguf" "$dir/s2.gguf" "sequential gptq Q4_K_M, 2 ranks"
same "$dir/s1.gguf" "$dir/s3.gguf" "sequential gptq Q4_K_M, 3 ranks (7 windows)"
[ ! -e "$dir/s2.gguf.lowbit-checkpoint" ] || { echo "FAIL: a checkpoint outlived the file"; exit 1; }
check_quantize "sequential gptq 2:4 sparsegpt" --type Q4_0 --method gptq "${small[@]}" \
  --nm 2:4 --prune sparsegpt

# A method that needs the whole calibration set in one process is refused on every rank,
# before any output exists.
if ranks 2 quantize "$model" --type Q4_K_M --method awq --calib "$calib" -q \
  -o "$dir/awq.gguf" >"$dir/awq.log" 2>&1; then
  echo "FAIL: awq over 2 ranks succeeded"; exit 1
fi
grep -q "method awq does not split over ranks" "$dir/awq.log" || { cat "$dir/awq.log"; echo "FAIL: message"; exit 1; }
[ ! -e "$dir/awq.gguf" ] || { echo "FAIL: awq left an output"; exit 1; }
echo "ok: awq is refused"

# rank1_of COMMAND: the pid of rank 1 of a running `lowbit COMMAND` job (empty if none).
rank1_of() {
  local exe
  exe=$(readlink -f "$lowbit")
  for p in $(pgrep -f "$lowbit $1" || true); do
    # the rank itself, not mpirun's child before its exec
    [ "$(readlink -f "/proc/$p/exe" 2>/dev/null)" = "$exe" ] || continue
    if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1"; then
      echo "$p"
      return
    fi
  done
}
# expect_stopped JOB_PID LOG OUT: the job ended non-zero, naming rank 1, and left no OUT.
expect_stopped() {
  if wait "$1"; then echo "FAIL: the job survived its rank 1"; exit 1; fi
  grep -q "rank 1" "$2" || { cat "$2"; echo "FAIL: no word of rank 1"; exit 1; }
  [ ! -e "$3" ] || { echo "FAIL: left $3"; exit 1; }
  if ls "$3".tmp.* >/dev/null 2>&1; then echo "FAIL: left a temporary of $3"; exit 1; fi
}

# kill_rank1_when TRIES FILE OUT LOG ARGS...: starts `quantize MODEL -q ARGS -o OUT` on 2
# ranks, kills its rank 1 with SIGKILL once FILE exists (polled TRIES times, 5 ms apart) and
# checks that the job stopped, naming rank 1, with no OUT.
kill_rank1_when() {
  local tries=$1 file=$2 out=$3 log=$4
  shift 4
  ranks 2 quantize "$model" -q "$@" -o "$out" >/dev/null 2>"$log" &
  local job=$! victim=""
  for _ in $(seq "$tries"); do
    [ -n "$victim" ] || victim=$(rank1_of quantize)
    [ -n "$victim" ] && [ -e "$file" ] && break
    sleep 0.005
  done
  [ -e "$file" ] || { echo "FAIL: $file never appeared"; exit 1; }
  kill -9 "$victim"
  expect_stopped "$job" "$log" "$out"
}

# A rank killed mid-run: mpirun stops the job, which ends non-zero with no output.
ranks 2 calibrate "$model" --calib "$calib" --calib-samples 64 --calib-ctx 512 --hessian -q \
  -o "$dir/killed.gguf" >"$dir/killed.log" 2>&1 &
job=$!
victim=""
for _ in $(seq 100); do
  victim=$(rank1_of calibrate)
  [ -n "$victim" ] && break
  sleep 0.1
done
[ -n "$victim" ] || { echo "FAIL: rank 1 never started"; exit 1; }
sleep 1
kill -9 "$victim"
expect_stopped "$job" "$dir/killed.log" "$dir/killed.gguf"
echo "ok: a killed rank stops calibrate without output"

# The same during quantize, once rank 0 has written five tensors: the finished ones stay in
# OUT.lowbit-checkpoint, and a rerun with --resume ends with the one-process bytes.
gptq=(--type Q4_K_M --method gptq --stats "$dir/h1.gguf")
"$lowbit" quantize "$model" -q "${gptq[@]}" -o "$dir/whole.gguf" >/dev/null
out=$dir/resumed.gguf
kill_rank1_when 1000 "$out.lowbit-checkpoint/done-4.bin" "$out" "$dir/resumed.log" "${gptq[@]}"
ranks 2 quantize "$model" -q "${gptq[@]}" -o "$out" --resume >/dev/null
same "$dir/whole.gguf" "$out" "quantize killed at a rank, then --resume"
[ ! -e "$out.lowbit-checkpoint" ] || { echo "FAIL: the checkpoint outlived the file"; exit 1; }

# Sequential GPTQ killed at rank 1 after block 2 (its checkpoint holds every window's
# activations, gathered on rank 0), resumed over 3 ranks: the one-process bytes.
seq=(--type Q4_K_M --method gptq --calib "$calib" --calib-samples 24 --calib-ctx 256)
"$lowbit" quantize "$model" -q "${seq[@]}" -o "$dir/seq-whole.gguf" >/dev/null
out=$dir/seq-resumed.gguf
kill_rank1_when 2000 "$out.lowbit-checkpoint/done-3.bin" "$out" "$dir/seq.log" "${seq[@]}"
[ -e "$out.lowbit-checkpoint/state.bin" ] || { echo "FAIL: no activations kept"; exit 1; }
ranks 3 quantize "$model" -q "${seq[@]}" -o "$out" --resume >/dev/null
same "$dir/seq-whole.gguf" "$out" "sequential gptq killed at a rank, then --resume on 3 ranks"
[ ! -e "$out.lowbit-checkpoint" ] || { echo "FAIL: the checkpoint outlived the file"; exit 1; }
