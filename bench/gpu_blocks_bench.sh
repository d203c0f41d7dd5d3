#!/usr/bin/env bash
# Issue 28 (GPU): quantized files evaluated in their blocks. Run on the GPU machine from the
# repository root with build-carry/ holding bundle.tar.xz (quantlens and the cuda_test_*
# binaries), d5/ (eval.txt) and make_llama3_8b_shape.py. Stages skip what an
# earlier call on the same warm machine finished, so a call cut by the time limit resumes:
#   1 cuda_test_cuda_blocks, then the engine and stats suites (regressions)
#   2 our Q4_K_M of qwen3moe and llama-8m: eval --gpu in blocks vs dequantized vs CPU, compare
#   (QUICK=1: only the blocks tests and stage 3)
#   3 the 8B shape: checkpoint, our Q4_K_M (16 host threads), then eval --gpu of the file in
#     blocks and dequantized (QUANTLENS_GPU_BLOCKS=0, the path before, as the reference in the
#     same run), 100 chunks of 512, and with llama.cpp's numerics (20 chunks)
# Everything lands in $OUT/blocks.tgz; a summary is printed.
set -u
. bench/device_env.sh  # B, Q, the bundle unpacked
D=$B/d5; R=/tmp/blocks; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $R/gpu.txt
finish() { tar czf $OUT/blocks.tgz -C $R . 2>/dev/null; }
trap finish EXIT

[ -f /tmp/ckpt/config.json ] || (python3 $B/make_llama3_8b_shape.py /tmp/ckpt examples/models/llama-8m > $R/ckpt.log 2>&1; echo "ckpt rc $?" >> $R/ckpt.log) &
CKPT_JOB=$!

if [ ! -f $R/tests.done ]; then
  timeout 150 /tmp/ql/bin/cuda_test_cuda_blocks > $R/t-blocks.txt 2>&1; echo "blocks tests rc $?"
  grep -E "^\[  (PASSED|FAILED) |^\[  FAILED|weights .* in blocks|tiled|Failure|Expected|actual|Which is|max \|d|ms \(" $R/t-blocks.txt | head -50
  [ -n "${QUICK:-}" ] || timeout 300 /tmp/ql/bin/cuda_test_cuda_engine > $R/t-engine.txt 2>&1; echo "engine tests rc $?"
  grep -E "^\[  (PASSED|FAILED) |^\[  FAILED" $R/t-engine.txt | head -30
  [ -z "${QUICK:-}" ] && [ -x /tmp/ql/bin/cuda_test_cuda_stats ] && timeout 150 /tmp/ql/bin/cuda_test_cuda_stats > $R/t-stats.txt 2>&1; echo "stats tests rc $?"
  grep -E "^\[  (PASSED|FAILED) |^\[  FAILED" $R/t-stats.txt | head -20
  touch $R/tests.done
fi

show() {  # show LABEL JSON...: ppl, KLD, tokens/s, peak GPU memory of eval/compare JSON
  python3 - "$@" <<'PY'
import json, sys
parts = []
for p in sys.argv[2:]:
    try:
        d = json.load(open(p)); k = d.get('kld') or {}
        parts.append('ppl %.5f kld %s tok/s %.0f gpu %.2f GB rss %.2f GB' % (
            d['ppl'], k.get('mean') if isinstance(k, dict) else '-', d.get('tokens_per_second', 0),
            d.get('peak_gpu_bytes', 0) / 1e9, d.get('peak_rss_bytes', 0) / 1e9))
    except Exception as e:
        parts.append('unreadable (%s)' % e)
print(sys.argv[1], ' | '.join(parts), flush=True)
PY
}

if [ -z "${QUICK:-}" ] && [ ! -f $R/fixtures.done ]; then
  for f in tests/fixtures/qwen3moe examples/models/llama-8m; do
    n=$(basename $f)
    $Q -q quantize $f --preset Q4_K_M -o $R/$n-q4.gguf --force > $R/quant-$n.log 2>&1 || tail -3 $R/quant-$n.log
    timeout 60 $Q -q eval $R/$n-q4.gguf --text $D/eval.txt --ctx 256 --chunks 8 --json > $R/e-$n-cpu.json 2> $R/e-$n-cpu.err
    timeout 60 $Q -q eval $R/$n-q4.gguf --text $D/eval.txt --ctx 256 --chunks 8 --json --gpu > $R/e-$n-blocks.json 2> $R/e-$n-blocks.err
    QUANTLENS_GPU_BLOCKS=0 timeout 60 $Q -q eval $R/$n-q4.gguf --text $D/eval.txt --ctx 256 --chunks 8 --json --gpu > $R/e-$n-plain.json 2> $R/e-$n-plain.err
    show "eval $n Q4_K_M (cpu | gpu blocks | gpu dequantized):" $R/e-$n-cpu.json $R/e-$n-blocks.json $R/e-$n-plain.json
    timeout 120 $Q -q compare $f $R/$n-q4.gguf --text $D/eval.txt --ctx 256 --chunks 4 --json --gpu > $R/c-$n-blocks.json 2> $R/c-$n-blocks.err || tail -3 $R/c-$n-blocks.err
    QUANTLENS_GPU_BLOCKS=0 timeout 120 $Q -q compare $f $R/$n-q4.gguf --text $D/eval.txt --ctx 256 --chunks 4 --json --gpu > $R/c-$n-plain.json 2> $R/c-$n-plain.err || tail -3 $R/c-$n-plain.err
    show "compare $n Q4_K_M --gpu (blocks | dequantized):" $R/c-$n-blocks.json $R/c-$n-plain.json
  done
  touch $R/fixtures.done
fi

wait $CKPT_JOB; cat $R/ckpt.log | tail -2
if [ ! -f /tmp/8b-q4.gguf ]; then  # quantize writes a temporary file and renames it
  /usr/bin/time -v $Q --threads 14 quantize /tmp/ckpt --preset Q4_K_M -o /tmp/8b-q4.gguf > $R/quant-8b.log 2> $R/quant-8b.err
  grep -E "Elapsed|Maximum resident" $R/quant-8b.err
fi
ls -la /tmp/8b-q4.gguf
for mode in blocks plain; do
  [ -f $R/e8-$mode.json ] && continue
  env_=""; [ $mode = plain ] && env_="QUANTLENS_GPU_BLOCKS=0"
  /usr/bin/time -v env $env_ QUANTLENS_PROFILE=1 $Q eval /tmp/8b-q4.gguf --text $D/eval.txt --chunks 100 --gpu --json > $R/e8-$mode.json 2> $R/e8-$mode.err
  grep -E "Elapsed|Maximum resident|profile: a layer|profile: eval" $R/e8-$mode.err
done
show "eval 8B Q4_K_M, 100 x 512 (gpu blocks | gpu dequantized):" $R/e8-blocks.json $R/e8-plain.json
for mode in blocks plain; do
  [ -f $R/g8-$mode.json ] && continue
  env_=""; [ $mode = plain ] && env_="QUANTLENS_GPU_BLOCKS=0"
  /usr/bin/time -v env $env_ $Q eval /tmp/8b-q4.gguf --text $D/eval.txt --chunks 20 --gpu --ggml-numerics --json > $R/g8-$mode.json 2> $R/g8-$mode.err
  grep -E "Elapsed|Maximum resident" $R/g8-$mode.err
done
show "eval 8B Q4_K_M --ggml-numerics, 20 x 512 (gpu blocks | gpu dequantized):" $R/g8-blocks.json $R/g8-plain.json
