#!/usr/bin/env bash
# Issue 24 on the GPU, the Gated DeltaNet hybrids (bench/RESULTS.md, "Qwen3-Next and Qwen3.5 on
# the GPU"): the CUDA tests (CudaDeltaNet.*, CudaFamilies.*), then the three hybrid fixtures
# through the real CLI with and without --gpu (eval against transformers' log-probs, sweep,
# calibrate), then a Qwen3.5-shaped checkpoint (bench/make_qwen35_shape.py, random weights):
# eval --gpu with the chunked recurrence and with its step-by-step twin
# (QUANTLENS_DELTANET_SEQUENTIAL=1) in the same run, the GPU's log-probs against the CPU
# engine's on 2 chunks, and a Q4_K sweep --gpu of every tensor over 4,096 tokens. Run on the GPU machine from the repository root, with build-carry/
# holding bundle.tar.xz (scripts/device_bundle.sh of the CUDA build: quantlens and
# cuda_test_cuda_engine) and d5/eval.txt; results land in $OUT/r.tgz. QUICK=1 skips the shape.
set -u
. bench/device_env.sh  # B, Q, el, the bundle unpacked
D=$B/d5; fresh_results
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
timeout 240 /tmp/ql/bin/cuda_test_cuda_engine --gtest_filter='CudaDeltaNet.*:CudaFamilies.*' > $R/tests.txt 2>&1; echo "tests rc $?"
grep -E "^\[  (PASSED|FAILED) |^\[  FAILED|delta rule|chunked vs|vs transformers|F32  blk|F16  blk|Failure|Expected|Which is|actual" $R/tests.txt | head -80
el tests
for f in qwen3-next qwen3.5 qwen3.5-moe; do fixture_cpu_gpu $f $D/eval.txt $R; done
M=tests/fixtures/qwen3.5-moe
for dev in cpu gpu; do
  flag=""; [ $dev = gpu ] && flag=--gpu
  timeout 120 $Q -q calibrate $M --text $D/eval.txt --chunks 8 -o $R/im-$dev.dat $flag > $R/im-$dev.log 2>&1 || tail -3 $R/im-$dev.log
done
cmp $R/im-cpu.dat $R/im-gpu.dat && echo "imatrix identical" || python3 bench/compare_imatrix.py $R/im-cpu.dat $R/im-gpu.dat 2>&1 | tail -5
el fixtures
[ "${QUICK:-0}" = 1 ] && exit 0
S=/tmp/q35
timeout 400 python3 bench/make_qwen35_shape.py $S tests/fixtures/qwen3.5 > $R/shape.log 2>&1 || tail -5 $R/shape.log
tail -1 $R/shape.log; du -sh $S
el shape written
shape_cpu_gpu $S $D/eval.txt $R QUANTLENS_DELTANET_SEQUENTIAL=0 QUANTLENS_DELTANET_SEQUENTIAL=1
el done
