#!/usr/bin/env bash
# Issue 23 on the GPU: the CUDA tests (cuda_test_cuda_engine: CudaFamilies on gptoss,
# gptoss-mxfp4, glm4moe, deepseek3-mla, the gpt-oss sweep case, RoutingCountsMatchCpuSweep;
# cuda_test_cuda_stats: CalibrateGpuCoversRoutedExperts), then the MoE fixtures through the real
# CLI with and without --gpu: eval against transformers' log-probs, sweep, sweep --experts,
# calibrate. Run on the GPU machine from the repository root, with build-carry/ holding
# bundle.tar.xz (scripts/device_bundle.sh of the CUDA build: quantlens, cuda_test_cuda_engine,
# cuda_test_cuda_stats) and d4/ (calib.txt, eval.txt: their first 400 kB, so the carry stays
# under 64 MiB); results land in $OUT.
set -u
. bench/device_env.sh  # B, Q, the bundle unpacked
D=$B/d4; R=/tmp/res; rm -rf $R; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
timeout 120 /tmp/ql/bin/cuda_test_cuda_engine > $R/tests.txt 2>&1; echo "engine tests rc $?"
grep -E "^\[  (PASSED|FAILED) |^\[  FAILED|vs transformers|F32  blk|slots moved|Failure|Expected|Which is|actual" $R/tests.txt | head -70
timeout 90 /tmp/ql/bin/cuda_test_cuda_stats > $R/tests2.txt 2>&1; echo "stats tests rc $?"
grep -E "^\[  (PASSED|FAILED) |^\[  FAILED|calibrate --gpu|Failure|Expected|Which is|actual" $R/tests2.txt | head -30
FIXTURES="gptoss gptoss-mxfp4 glm4moe deepseek3-mla"
for f in $FIXTURES; do fixture_cpu_gpu $f $D/calib.txt $R; done
M=tests/fixtures/qwen3moe
for dev in cpu gpu; do
  flag=""; [ $dev = gpu ] && flag=--gpu
  timeout 120 $Q -q sweep $M --eval $D/calib.txt --tokens 1024 --ctx 256 --types Q8_0,Q4_0 --experts $flag --store $R/x-$dev.sqlite --json $R/x-$dev.json > $R/x-$dev.log 2>&1 || tail -3 $R/x-$dev.log
  timeout 120 $Q -q calibrate $M --text $D/calib.txt --chunks 8 -o $R/im-$dev.dat $flag > $R/im-$dev.log 2>&1 || tail -3 $R/im-$dev.log
done
echo "== qwen3moe sweep --experts, GPU vs CPU"; python3 bench/compare_sweeps.py $R/x-cpu.json $R/x-gpu.json 2>&1 | tail -8
python3 - "$R" <<'PY'
import json, sys
def rt(p):
    return {m['unit']: m['value'] for m in json.load(open(p))['measurements'] if m['metric'] == 'route_tokens' and m['type'] == 'Q4_0'}
c, g = rt(sys.argv[1] + '/x-cpu.json'), rt(sys.argv[1] + '/x-gpu.json')
print('expert units', len(c), len(g), 'route_tokens cpu', sum(c.values()), 'gpu', sum(g.values()), 'max |diff|', max((abs(c[k] - g.get(k, 0)) for k in c), default=None))
PY
echo "== qwen3moe calibrate --gpu vs CPU"; python3 bench/compare_imatrix.py $R/im-cpu.dat $R/im-gpu.dat 2>&1 | tail -4
# Issue 22's leftover: verify and compare --gpu on family fixtures (our Q4_K_M and Q8_0 of each),
# CPU vs GPU. MLA has no llama.cpp-numerics model, so DeepSeek runs without them on both.
for f in gemma2 phi3-longrope gptoss deepseek3-mla; do
  M=tests/fixtures/$f; extra=""; [ $f = deepseek3-mla ] && extra=--no-ggml-numerics
  for dev in cpu gpu; do
    flag=""; [ $dev = gpu ] && flag=--gpu
    timeout 150 $Q -q verify --base $M --text $D/eval.txt --presets Q4_K_M,Q8_0 --ctx 256 --chunks 4 --out-dir $R/v-$f-$dev $extra $flag --json $R/v-$f-$dev.json > $R/v-$f-$dev.log 2>&1 || tail -3 $R/v-$f-$dev.log
    echo "== verify $f $dev"; grep -v "^$" $R/v-$f-$dev.log | tail -4
  done
  qf=$(ls $R/v-$f-cpu/*.gguf 2>/dev/null | grep -i q4_k_m | head -1)
  [ -z "$qf" ] && { echo "no Q4_K_M file for $f"; continue; }
  cextra=""; [ $f = deepseek3-mla ] && cextra=--no-ggml-numerics
  for dev in cpu gpu; do
    flag=""; [ $dev = gpu ] && flag=--gpu
    timeout 120 $Q -q compare $M $qf --text $D/eval.txt --ctx 256 --chunks 4 --json $cextra $flag > $R/c-$f-$dev.json 2> $R/c-$f-$dev.err || tail -3 $R/c-$f-$dev.err
  done
  python3 - "$R/c-$f-cpu.json" "$R/c-$f-gpu.json" "$f" <<'PY'
import json, sys
def summary(p):
    try: d = json.load(open(p))
    except Exception as e: return 'unreadable (%s)' % e
    k = d.get('kld', {})
    return 'ppl %s KLD mean %s p99 %s' % (d.get('ppl_quant', d.get('ppl')), k.get('mean') if isinstance(k, dict) else k, k.get('p99') if isinstance(k, dict) else '')
print('== compare %s Q4_K_M: cpu %s | gpu %s' % (sys.argv[3], summary(sys.argv[1]), summary(sys.argv[2])))
PY
done
tar czf $OUT/moe-checks.tgz -C $R --exclude="*.gguf" --exclude="*.sqlite" .
