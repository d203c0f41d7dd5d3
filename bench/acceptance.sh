#!/usr/bin/env bash
# The issue-12 acceptance run on llama-8m, end to end, in one store:
#   1. prefix-cache speed-up (2 cores pinned, same run), 2. the 8-type sweep over 8,192 tokens
#   with llama.cpp's imatrix, 3. plans at the sizes of llama.cpp's Q3_K_M / Q4_K_M / Q5_K_M
#   files, driven by measured KLD and by the imatrix-weighted weight-error proxy,
#   4. verify: every recipe and our own uniform presets, 100 chunks of 512 against the base,
#   5. the HTML report.
# Usage (repository root): bench/acceptance.sh QUANTLENS_BIN DATA_DIR OUT_DIR
#   DATA_DIR holds calib.txt (the sweep's), eval.txt (verify's) and
#   llama-8m.llamacpp-imatrix.dat (../shared/data).
#   SWEEP_FLAGS: sweep options (default --ggml-numerics, as verify measures; SWEEP_FLAGS= for
#   pure f32); SKIP_PREFIX_TIMING=1 skips step 1; GPTQ_TEXT=calib.txt sweeps and writes the
#   recipes with GPTQ rounding against that text's Hessians (presets stay llama.cpp's).
set -euo pipefail
BIN=$(realpath "$1"); DATA=$(realpath "$2"); OUT=$3
mkdir -p "$OUT"; OUT=$(realpath "$OUT")
export QUANTLENS_STORE="${QUANTLENS_STORE:-/tmp/ql-acceptance.sqlite}"
rm -f "$QUANTLENS_STORE"*
M=examples/models/llama-8m
IM="$DATA/llama-8m.llamacpp-imatrix.dat"
T() { /usr/bin/time -f "%e s wall, %U s user" "$@"; }
log() { echo "== $*" | tee -a "$OUT/log.txt"; }
nproc | tee "$OUT/nproc.txt"
if [ -z "${SKIP_PREFIX_TIMING:-}" ]; then
log "1. prefix cache on/off, 2 cores (taskset -c 0,1), Q4_K, 4096 tokens"
{ T taskset -c 0,1 "$BIN" -q -t 2 sweep $M --eval "$DATA/eval.txt" --tokens 4096 --types Q4_K --no-uniform > "$OUT/pc_on.txt"; } 2>> "$OUT/log.txt"
{ T taskset -c 0,1 "$BIN" -q -t 2 sweep $M --eval "$DATA/eval.txt" --tokens 4096 --types Q4_K --no-uniform --no-prefix-cache > "$OUT/pc_off.txt"; } 2>> "$OUT/log.txt"
fi
log "2. sweep, 8 types, 8192 tokens of calib.txt (verify is held out: eval.txt), imatrix"
{ T "$BIN" -q sweep $M --eval "$DATA/calib.txt" --tokens 8192 --imatrix "$IM" ${SWEEP_FLAGS---ggml-numerics} ${GPTQ_TEXT:+--gptq "$GPTQ_TEXT"} > "$OUT/sweep.txt"; } 2>> "$OUT/log.txt"
JOB=$("$BIN" jobs list --json | python3 -c 'import json,sys; print(max(j["id"] for j in json.load(sys.stdin)))')
log "3. plans"
RECIPES=()
for size in 4484000 5373408 6176000; do
  for metric in kld proxy; do
    # --force: each size rewrites the metric's frontier, and a rerun reuses OUT_DIR.
    "$BIN" plan $JOB --target-size $size --metric $metric --name "$metric-$size" --force \
      -o "$OUT/$metric-$size.json" --frontier "$OUT/frontier-$metric.json" >> "$OUT/plans.txt"
    RECIPES+=(--recipe "$OUT/$metric-$size.json")
  done
done
"$BIN" plan $JOB --knee --force -o "$OUT/knee.json" --name knee >> "$OUT/plans.txt"
RECIPES+=(--recipe "$OUT/knee.json")
log "4. verify (100 chunks)"
{ T "$BIN" -q verify --base $M --text "$DATA/eval.txt" --imatrix "$IM" "${RECIPES[@]}" \
    ${GPTQ_TEXT:+--gptq "$GPTQ_TEXT"} \
    --presets Q8_0,Q6_K,Q5_K_M,Q4_K_M,Q3_K_M,Q2_K,IQ4_XS --out-dir "$OUT/files" \
    --force --json "$OUT/verify.json" --job $JOB > "$OUT/verify.txt"; } 2>> "$OUT/log.txt"
cat "$OUT/verify.txt"
log "5. report"
"$BIN" report $JOB --force -o "$OUT/report.html" >> "$OUT/log.txt" 2>&1 || true
cat "$OUT/log.txt"
cp "$QUANTLENS_STORE" "$OUT/store.sqlite" 2>/dev/null || true
