#!/usr/bin/env bash
# DeepSeek-V3's MLA on the GPU against the CPU and transformers, and compare --gpu on the MoE
# fixtures (our Q4_K_M of each): the CUDA family, routing and calibrate tests, then the CLI.
# Run on the GPU machine from the repository root with build-carry/ as for gpu_moe_checks.sh;
# everything lands in $OUT/mla-checks.tgz.
set -u
. bench/device_env.sh  # B, Q, the bundle unpacked
D=$B/d4; R=/tmp/res; rm -rf $R; mkdir -p $R
timeout 200 /tmp/ql/bin/cuda_test_cuda_engine --gtest_filter='CudaFamilies.*:CudaSweep.Routing*' > $R/tests.txt 2>&1; echo "engine tests rc $?"
grep -E "^\[  (PASSED|FAILED) |vs transformers|moved|Failure|Expected|actual" $R/tests.txt | head -60
timeout 120 /tmp/ql/bin/cuda_test_cuda_stats --gtest_filter='CudaStats.Calibrate*:CudaStats.GpuHessians*' > $R/tests2.txt 2>&1; echo "stats tests rc $?"
grep -E "^\[  (PASSED|FAILED) |calibrate --gpu|Hessians|Failure|Expected|actual" $R/tests2.txt | head -40
summary() {
  python3 - "$@" <<'PY'
import json, sys
out = []
for p in sys.argv[2:]:
    try:
        d = json.load(open(p)); k = d.get('kld') or {}
        out.append('ppl %.5f KLD %s top1 %s' % (d['ppl'], k.get('mean') if isinstance(k, dict) else '-', d.get('same_top1_pct', '-')))
    except Exception as e:
        out.append('unreadable')
print(sys.argv[1], ' | '.join(out))
PY
}
for f in qwen3moe glm4moe deepseek3-mla phi3-longrope; do
  M=tests/fixtures/$f; x=""; [ $f = deepseek3-mla ] && x=--no-ggml-numerics
  $Q -q quantize $M --preset Q4_K_M -o $R/$f-q4.gguf > $R/quant-$f.log 2>&1 || tail -3 $R/quant-$f.log
  for dev in cpu gpu; do
    flag=""; [ $dev = gpu ] && flag=--gpu
    timeout 120 $Q -q compare $M $R/$f-q4.gguf --text $D/eval.txt --ctx 256 --chunks 4 --json $x $flag > $R/c-$f-$dev.json 2> $R/c-$f-$dev.err || tail -3 $R/c-$f-$dev.err
    timeout 60 $Q -q eval $R/$f-q4.gguf --text $D/eval.txt --ctx 256 --chunks 4 --json $flag > $R/q-$f-$dev.json 2> $R/q-$f-$dev.err || tail -3 $R/q-$f-$dev.err
  done
  summary "compare $f Q4_K_M (cpu | gpu):" $R/c-$f-cpu.json $R/c-$f-gpu.json
  summary "eval of $f Q4_K_M (cpu | gpu):" $R/q-$f-cpu.json $R/q-$f-gpu.json
done
M=tests/fixtures/deepseek3-mla
for ctx in 64 128 256 512; do
  for dev in cpu gpu; do
    flag=""; [ $dev = gpu ] && flag=--gpu
    timeout 60 $Q -q eval $M --text $D/eval.txt --ctx $ctx --chunks 4 --json $flag > $R/x-$ctx-$dev.json 2> $R/x-$ctx-$dev.err || tail -3 $R/x-$ctx-$dev.err
  done
  summary "eval deepseek3-mla ctx $ctx (cpu | gpu):" $R/x-$ctx-cpu.json $R/x-$ctx-gpu.json
done
tar czf $OUT/mla-checks.tgz -C $R .
