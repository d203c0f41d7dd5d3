#!/bin/sh
# Issue 29 acceptance on llama-8m (CPU): a GPTQ-menu plan at the size of uniform gptq4g128,
# held out (sweep and Hessians on calib.txt, verify on eval.txt), GPTQ rounding on both.
# Usage: [FORMATS=LIST] [TOKENS=N] [ACT_ORDER=1] bench/gptq_llama8m.sh [OUT_DIR]   (needs ../shared; the
# full menu, FORMATS=gptq, took 20 min at 4,096 tokens on 2 cores)
# 7545344 bytes = uniform gptq4g128 (plan prints each measured uniform size).
set -eu
Q=${QUANTLENS:-build/quantlens}
S=${QUANTLENS_SHARED:-../shared}
OUT=${1:-gptq-llama8m}
M=$S/models/llama-8m
mkdir -p "$OUT"
FORMATS=${FORMATS:-gptq3g64a,gptq3g128a,gptq4g64a,gptq4g128a,gptq4g32a,gptq8pc}  # job 2 of RESULTS.md
"$Q" sweep "$M" --eval "$S/data/calib.txt" --tokens "${TOKENS:-4096}" --ctx 512 --gptq "$S/data/calib.txt" \
    --types "$FORMATS" --store "$OUT/jobs.sqlite" ${ACT_ORDER:+--gptq-act-order}  # recipe, verify follow
"$Q" plan 1 --format gptq --target-size 7545344 --store "$OUT/jobs.sqlite" \
    -o "$OUT/plan.json" --export-gptq "$OUT/plan.quantization_config.json" --force
"$Q" verify --format gptq --base "$M" --text "$S/data/eval.txt" --chunks 40 \
    --gptq "$S/data/calib.txt" --recipe "$OUT/plan.json" --out-dir "$OUT/verify" \
    --json "$OUT/verify.json" --store "$OUT/jobs.sqlite" --force  # the store: held-out check
