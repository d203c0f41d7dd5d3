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
T0=$(date +%s)
el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
. bench/device_env.sh  # B, Q, the bundle unpacked
D=$B/d5; R=/tmp/res; rm -rf $R; mkdir -p $R
trap 'cd /tmp && tar czf $OUT/r.tgz --exclude="*.sqlite" res' EXIT
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
for mode in 0 1; do
  QUANTLENS_DELTANET_SEQUENTIAL=$mode QUANTLENS_PROFILE=1 timeout 300 $Q eval $S --text $D/eval.txt --ctx 512 --chunks 40 --gpu --json > $R/shape-gpu-seq$mode.json 2> $R/shape-gpu-seq$mode.err || tail -3 $R/shape-gpu-seq$mode.err
  el "eval --gpu sequential=$mode"
done
timeout 400 $Q -q eval $S --text $D/eval.txt --ctx 512 --chunks 2 --save-logits $R/shape-cpu.qllogp --json > $R/shape-cpu.json 2> $R/shape-cpu.err || tail -3 $R/shape-cpu.err
el "eval cpu 2 chunks"
timeout 120 $Q -q eval $S --text $D/eval.txt --ctx 512 --chunks 2 --base $R/shape-cpu.qllogp --gpu --json > $R/shape-gpu-vs-cpu.json 2> $R/shape-gpu-vs-cpu.err || tail -3 $R/shape-gpu-vs-cpu.err
rm -f $R/shape-cpu.qllogp
/usr/bin/time -f "shape sweep --gpu %e s wall" timeout 300 $Q -q sweep $S --eval $D/eval.txt --tokens 4096 --types Q4_K --gpu --store /tmp/shape-sweep.sqlite --json $R/shape-sweep.json > $R/shape-sweep.log 2>&1 || tail -3 $R/shape-sweep.log
tail -2 $R/shape-sweep.log
el "sweep --gpu of the shape"
python3 - "$R" <<'PY'
import json, sys
R = sys.argv[1]
for name in ("shape-gpu-seq0", "shape-gpu-seq1", "shape-cpu", "shape-gpu-vs-cpu"):
    try:
        j = json.load(open(f"{R}/{name}.json"))
    except Exception as e:
        print(name, "missing", e); continue
    keys = {k: j.get(k) for k in ("ppl", "tokens_scored", "seconds", "tokens_per_second", "peak_gpu_bytes")}
    if "kld" in j: keys["kld_mean"] = j["kld"]["mean"]; keys["top1"] = j.get("same_top1_pct")
    print(name, keys)
PY
el done
