#!/bin/sh
# Issue 25's acceptance on llama-8m (CPU), held out on every side:
#   - calib.txt cut in two by lines: the sweep measures the first half, GPTQ's Hessians (sweep
#     and the written files) come from the second, and verify scores eval.txt;
#   - the sweep: every default type (Q2_K..Q8_0, IQ4_XS, IQ3_S) at imatrix rounding, plus the
#     GPTQ / plain alternatives the weight proxy lets through (--rounding-choice, share SHARE);
#   - plans at the sizes of our Q3_K_M, Q4_K_M, Q5_K_M and Q6_K files with llama.cpp's imatrix
#     and at Q4_K_M + 7 %, each with the per-tensor rounding choice ("rc-SIZE") and with the
#     imatrix measurements only, written with GPTQ on every tensor ("g-SIZE");
#   - verify: all of them beside the presets (same imatrix), 100 chunks of 512 of eval.txt.
# SAME=1: no halves; the sweep and GPTQ both read calib.txt itself, as the README's example
# does (the sweep its first tokens, GPTQ's Hessians its last chunks).
# Usage: [TOKENS=8192] [SHARE=1] [SAME=1] [Q=build/quantlens] bench/issue25_llama8m.sh [OUT]
set -eu
Q=${Q:-build/quantlens}
S=${QUANTLENS_SHARED:-../shared}
OUT=${1:-/tmp/ql-issue25}
M=$S/models/llama-8m
IM=$S/data/llama-8m.llamacpp-imatrix.dat
STORE=$OUT/jobs.sqlite
SIZES=${SIZES:-"4483584 5373440 5749581 6176256 7029248"}  # Q4_K_M + 7 % = 5749581
mkdir -p "$OUT"
SWEEP_TEXT=$OUT/calib-a.txt
HESSIAN_TEXT=$OUT/calib-b.txt
if [ "${SAME:-0}" = 1 ]; then
    SWEEP_TEXT=$S/data/calib.txt
    HESSIAN_TEXT=$S/data/calib.txt
else
    n=$(wc -l < "$S/data/calib.txt")
    head -n $((n / 2)) "$S/data/calib.txt" > "$SWEEP_TEXT"
    tail -n +$((n / 2 + 1)) "$S/data/calib.txt" > "$HESSIAN_TEXT"
fi
if [ ! -f "$STORE" ]; then
    /usr/bin/time -f "sweep: %e s wall" "$Q" sweep "$M" --eval "$SWEEP_TEXT" \
        --tokens "${TOKENS:-8192}" --imatrix "$IM" --gptq "$HESSIAN_TEXT" --rounding-choice \
        --rounding-share "${SHARE:-1}" --ggml-numerics --store "$STORE" > "$OUT/sweep.txt"
fi
tail -n 30 "$OUT/sweep.txt"
RECIPES=""
for size in $SIZES; do
    "$Q" plan 1 --target-size "$size" --store "$STORE" -o "$OUT/rc-$size.json" \
        --name "rc-$size" --force | tail -n 4
    "$Q" plan 1 --target-size "$size" --no-rounding-choice --store "$STORE" \
        -o "$OUT/g-$size.json" --name "g-$size" --force | tail -n 4
    RECIPES="$RECIPES --recipe $OUT/rc-$size.json --recipe $OUT/g-$size.json"
done
# shellcheck disable=SC2086
/usr/bin/time -f "verify: %e s wall" "$Q" verify --base "$M" --text "$S/data/eval.txt" \
    --chunks 100 $RECIPES --presets Q3_K_M,Q4_K_M,Q5_K_M,Q6_K --imatrix "$IM" \
    --gptq "$HESSIAN_TEXT" --store "$STORE" --out-dir "$OUT/files" \
    --json "$OUT/verify.json" --force --job 1 | tee "$OUT/verify.txt"
