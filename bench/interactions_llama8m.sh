#!/bin/sh
# Issue 25's pairwise interaction correction on llama-8m (bench/RESULTS.md, 2026-12-07):
# sweep on calib.txt, plan at llama.cpp's Q3_K_M / Q4_K_M / Q5_K_M sizes (and two between)
# with `--interactions` (the mix also over MIX_TOKENS of calib.txt), then verify every recipe
# three times: on the sweep's own 8 windows of calib.txt and on 100 windows of it
# (--allow-overlap: non-additivity, then the sweep's sample) and held out on 100 chunks of
# eval.txt (+ the shift to another text).
# Usage: bench/interactions_llama8m.sh [OUT]   (Q=quantlens binary, PAIRS=pairs per plan)
set -eu
Q=${Q:-build/quantlens}
SHARED=${QUANTLENS_SHARED:-../shared}
OUT=${1:-/tmp/ql-interactions}
PAIRS=${PAIRS:-64}
MIX_TOKENS=${MIX_TOKENS:-51200}
SIZES=${SIZES:-"4484000 5000000 5373408 5800000 6176000"}
M=$SHARED/models/llama-8m
IM=$SHARED/data/llama-8m.llamacpp-imatrix.dat
STORE=$OUT/jobs.sqlite
mkdir -p "$OUT"

if [ ! -f "$STORE" ]; then
    $Q sweep "$M" --eval "$SHARED/data/calib.txt" --tokens 4096 --types Q3_K,Q4_K,Q5_K,Q6_K \
        --imatrix "$IM" --ggml-numerics --store "$STORE"
fi
JOB=${JOB:-1}
RECIPES=""
for size in $SIZES; do
    $Q plan "$JOB" --target-size "$size" --interactions "$PAIRS" \
        --interactions-tokens "$MIX_TOKENS" --store "$STORE" \
        -o "$OUT/r$size.json" --name "interactions-$size" --force | tail -n 16
    RECIPES="$RECIPES --recipe $OUT/r$size.json"
done
# shellcheck disable=SC2086
$Q verify --base "$M" --text "$SHARED/data/calib.txt" --chunks 8 --allow-overlap $RECIPES \
    --presets none --imatrix "$IM" --store "$STORE" --out-dir "$OUT/v-calib" \
    --json "$OUT/verify-calib.json" --force
# shellcheck disable=SC2086
$Q verify --base "$M" --text "$SHARED/data/calib.txt" --chunks 100 --allow-overlap $RECIPES \
    --presets none --imatrix "$IM" --store "$STORE" --out-dir "$OUT/v-calib100" \
    --json "$OUT/verify-calib100.json" --force
# shellcheck disable=SC2086
$Q verify --base "$M" --text "$SHARED/data/eval.txt" --chunks 100 $RECIPES \
    --presets Q3_K_M,Q4_K_M,Q5_K_M --imatrix "$IM" --store "$STORE" --out-dir "$OUT/v-eval" \
    --json "$OUT/verify-eval.json" --force --job "$JOB"
