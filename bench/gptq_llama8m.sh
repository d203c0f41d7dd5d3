#!/bin/sh
# Issue 29 acceptance on llama-8m (CPU): a GPTQ-menu plan at the size of uniform gptq4g128,
# held out (sweep and Hessians on calib.txt, verify on eval.txt), GPTQ rounding on both.
# Usage: [FORMATS=LIST] [TOKENS=N] [ACT_ORDER=1] [SPLIT=1] bench/gptq_llama8m.sh [OUT_DIR]
# (needs ../shared; the full menu, FORMATS=gptq, took 14-20 min at 4,096 tokens on 2 cores).
# SPLIT=1: calib.txt cut in two by lines, the sweep measuring the first half and the GPTQ
# Hessians (sweep and verify) taken from the second, so no unit's sensitivity is measured on
# the text its GPTQ rounding was fitted to.
# 7545344 bytes = uniform gptq4g128 (plan prints each measured uniform size).
set -eu
Q=${QUANTLENS:-build/quantlens}
S=${QUANTLENS_SHARED:-../shared}
OUT=${1:-gptq-llama8m}
M=$S/models/llama-8m
mkdir -p "$OUT"
SWEEP_TEXT=$S/data/calib.txt
HESSIAN_TEXT=$S/data/calib.txt
if [ "${SPLIT:-0}" = 1 ]; then
    n=$(wc -l < "$S/data/calib.txt")
    head -n $((n / 2)) "$S/data/calib.txt" > "$OUT/calib-a.txt"
    tail -n +$((n / 2 + 1)) "$S/data/calib.txt" > "$OUT/calib-b.txt"
    SWEEP_TEXT=$OUT/calib-a.txt
    HESSIAN_TEXT=$OUT/calib-b.txt
fi
FORMATS=${FORMATS:-gptq3g64a,gptq3g128a,gptq4g64a,gptq4g128a,gptq4g32a,gptq8pc}  # job 2 of RESULTS.md
"$Q" sweep "$M" --eval "$SWEEP_TEXT" --tokens "${TOKENS:-4096}" --ctx 512 --gptq "$HESSIAN_TEXT" \
    --types "$FORMATS" --store "$OUT/jobs.sqlite" ${ACT_ORDER:+--gptq-act-order}  # recipe, verify follow
"$Q" plan 1 --format gptq --target-size 7545344 --store "$OUT/jobs.sqlite" \
    -o "$OUT/plan.json" --export-gptq "$OUT/plan.quantization_config.json" --force
"$Q" verify --format gptq --base "$M" --text "$S/data/eval.txt" --chunks 40 \
    --gptq "$HESSIAN_TEXT" --recipe "$OUT/plan.json" --out-dir "$OUT/verify" \
    --json "$OUT/verify.json" --store "$OUT/jobs.sqlite" --force  # the store: held-out check
