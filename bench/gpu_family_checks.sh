#!/usr/bin/env bash
# Issue 22 on the GPU (bench/RESULTS.md, "The dense families on the GPU"): the CUDA tests, then
# the dense family fixtures through the real CLI with and without --gpu (eval against
# transformers' log-probs, sweep, calibrate). Run on the GPU machine from the repository root,
# with build-carry/ holding bundle.tar.xz (scripts/device_bundle.sh of the CUDA build: quantlens
# and cuda_test_cuda_engine) and d3/ (calib.txt, eval.txt); results land in $OUT/r.tgz.
set -u
T0=$(date +%s)
el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
. bench/device_env.sh  # B, Q, the bundle unpacked
D=$B/d3; R=/tmp/res; rm -rf $R; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
timeout 150 /tmp/ql/bin/cuda_test_cuda_engine > $R/tests.txt 2>&1; echo "tests rc $?"
grep -E "^\[  (PASSED|FAILED) |^\[  FAILED|vs transformers|dKLD|Failure|Expected|Which is|actual" $R/tests.txt | head -60
el tests
for f in llama2-sp mistral-metaspace gemma2 gemma3 phi3-longrope; do
  M=tests/fixtures/$f
  for dev in cpu gpu; do
    flag=""; [ $dev = gpu ] && flag=--gpu
    $Q -q eval $M --text $D/eval.txt --ctx 512 --chunks 2 --base $M/reference.qllogp --json $flag > $R/e-$f-$dev.json 2> $R/e-$f-$dev.err || tail -3 $R/e-$f-$dev.err
  done
  python3 -c "
import json; c=json.load(open('$R/e-$f-cpu.json')); g=json.load(open('$R/e-$f-gpu.json'))
print('%-18s eval vs transformers: cpu ppl %.5f KLD %.3g top1 %.2f | gpu ppl %.5f KLD %.3g top1 %.2f' % ('$f', c['ppl'], c['kld']['mean'], c['same_top1_pct'], g['ppl'], g['kld']['mean'], g['same_top1_pct']))" || true
done
el evals
for f in gemma2 phi3-longrope; do
  M=tests/fixtures/$f
  for dev in cpu gpu; do
    flag=""; [ $dev = gpu ] && flag=--gpu
    /usr/bin/time -f "$f $dev sweep %e s" $Q -q sweep $M --eval $D/calib.txt --tokens 2048 $flag --store /tmp/s-$f-$dev.sqlite --json $R/s-$f-$dev.json > $R/s-$f-$dev.log 2>&1 || tail -5 $R/s-$f-$dev.log
    tail -1 $R/s-$f-$dev.log
  done
  python3 bench/compare_sweeps.py $R/s-$f-cpu.json $R/s-$f-gpu.json 2>&1 | tail -8
done
el sweeps
M=tests/fixtures/gemma2
$Q -q calibrate $M --text $D/calib.txt --chunks 20 -o /tmp/c-cpu.dat > $R/c-cpu.log 2>&1; tail -1 $R/c-cpu.log
$Q -q calibrate $M --text $D/calib.txt --chunks 20 --gpu -o /tmp/c-gpu.dat > $R/c-gpu.log 2>&1; tail -1 $R/c-gpu.log
cmp /tmp/c-cpu.dat /tmp/c-gpu.dat && echo "imatrix identical" || python3 bench/compare_imatrix.py /tmp/c-cpu.dat /tmp/c-gpu.dat
el done
cd /tmp && tar czf $OUT/r.tgz res
