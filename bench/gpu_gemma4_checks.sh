#!/usr/bin/env bash
# Issue 24 on the GPU, Gemma 4 (bench/RESULTS.md, "Gemma 4 on the GPU"), with the routed families
# again after the routers moved to F32: the CUDA tests (CudaFamilies.*, CudaDeltaNet.*,
# CudaSweep.*, the GPU statistics), then the Gemma 4 fixtures and the routed hybrids through the
# real CLI with and without --gpu (eval against transformers' log-probs, sweep, calibrate), then
# a Gemma-4-shaped checkpoint (bench/make_gemma4_shape.py, random weights, 35 layers):
# eval --gpu, the GPU's log-probs against the CPU engine's on 2 chunks, and a Q4_K sweep --gpu
# over 4,096 tokens. Run on the GPU machine from the repository root, with build-carry/ holding
# bundle.tar.xz (scripts/device_bundle.sh of the CUDA build: quantlens, cuda_test_cuda_engine,
# cuda_test_cuda_stats) and d5/eval.txt; results land in $OUT/r.tgz. QUICK=1 skips the shape.
set -u
. bench/device_env.sh  # B, Q, el, the bundle unpacked
D=$B/d5; fresh_results
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
if [ "${SKIP_FIXTURES:-0}" != 1 ]; then  # SKIP_FIXTURES=1: the shape only
timeout 200 /tmp/ql/bin/cuda_test_cuda_engine --gtest_filter='CudaFamilies.*:CudaDeltaNet.*:CudaSweep.*' > $R/tests.txt 2>&1; echo "engine tests rc $?"
[ -x /tmp/ql/bin/cuda_test_cuda_stats ] && { timeout 120 /tmp/ql/bin/cuda_test_cuda_stats > $R/tests-stats.txt 2>&1; echo "stats tests rc $?"; }
grep -hE "^\[  (PASSED|FAILED) |^\[  FAILED|Failure|Expected|Which is|actual|gemma4|qwen3-next  " $R/tests.txt $R/tests-stats.txt | head -90
el tests
for f in gemma4 gemma4-moe qwen3-next qwen3.5-moe; do fixture_cpu_gpu $f $D/eval.txt $R; done
for f in gemma4 gemma4-moe qwen3.5-moe; do
  M=tests/fixtures/$f
  for dev in cpu gpu; do
    flag=""; [ $dev = gpu ] && flag=--gpu
    timeout 120 $Q -q calibrate $M --text $D/eval.txt --chunks 8 -o $R/im-$f-$dev.dat $flag > $R/im-$f-$dev.log 2>&1 || tail -3 $R/im-$f-$dev.log
  done
  cmp $R/im-$f-cpu.dat $R/im-$f-gpu.dat && echo "$f imatrix identical" || python3 bench/compare_imatrix.py $R/im-$f-cpu.dat $R/im-$f-gpu.dat 2>&1 | tail -3
done
for f in gemma4 gemma4-moe; do  # compare: the quantized GGUF's blocks on the GPU, lock-step layers
  timeout 120 $Q -q quantize tests/fixtures/$f -p Q4_K_M -o /tmp/$f-q4km.gguf -f > /dev/null 2>&1 || echo "quantize $f failed"
  for dev in cpu gpu; do
    flag=""; [ $dev = gpu ] && flag=--gpu
    timeout 120 $Q -q compare tests/fixtures/$f /tmp/$f-q4km.gguf --text $D/eval.txt --chunks 2 --json --store /tmp/c-$f-$dev.sqlite $flag > $R/c-$f-$dev.json 2> $R/c-$f-$dev.err || tail -3 $R/c-$f-$dev.err
  done
  python3 - $R/c-$f-cpu.json $R/c-$f-gpu.json $f <<'PY'
import json, sys
def kld(p):
    j = json.load(open(p))
    k = j.get("kld") or {}
    return k.get("mean") if isinstance(k, dict) else k, j.get("ppl_quant") or j.get("ppl")
try:
    print(sys.argv[3], "compare Q4_K_M: cpu (kld, ppl)", kld(sys.argv[1]), "gpu", kld(sys.argv[2]))
except Exception as e:
    print(sys.argv[3], "compare: no result", e)
PY
done
fi
el fixtures
[ "${QUICK:-0}" = 1 ] && exit 0
S=/tmp/g4shape
timeout 300 python3 bench/make_gemma4_shape.py $S tests/fixtures/gemma4 > $R/shape.log 2>&1 || tail -5 $R/shape.log
tail -1 $R/shape.log; du -sh $S
python3 -c "import json; c=json.load(open('$S/config.json')); print('layer_types', c.get('layer_types')[:10], 'per_layer_config', c.get('per_layer_config'))"
el shape written
shape_cpu_gpu $S $D/eval.txt $R
el done
