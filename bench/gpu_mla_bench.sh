#!/usr/bin/env bash
# DeepSeek-V3's MLA on the real shape (issue 23): 4 layers of its attention (128 heads, q_lora
# 1536, kv_lora 512, rope 64, nope 128, v 128) with its dense 18,432-wide MLP, random BF16
# weights, 8,192 tokens in 16 sequences of 512: ql_gpu_bench (per-step profile of layers 100-199)
# against transformers' DeepseekV3ForCausalLM (sdpa and eager) in the same call on the same GPU.
# Then phi3-longrope's compare, CPU vs --gpu. Run on the GPU machine from the repository root,
# build-carry/bundle.tar.xz holding quantlens and ql_gpu_bench; results in $OUT.
set -u
. bench/device_env.sh  # B, Q, the bundle unpacked
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
QUANTLENS_PROFILE=1 timeout 120 /tmp/ql/bin/ql_gpu_bench --deepseek-v3-layers 4 --reps 60 \
    --json $OUT/ours-deepseek.json 2> $OUT/ours-deepseek.err > /dev/null; echo "ours rc $?"
grep -E "eval:|profile" $OUT/ours-deepseek.err
timeout 150 python3 bench/gpu_torch_bench.py --deepseek-v3-layers 4 --reps 3 \
    --json $OUT/torch-deepseek.json > /dev/null 2> $OUT/torch-deepseek.err; echo "torch rc $?"
tail -3 $OUT/torch-deepseek.err
python3 - $OUT/ours-deepseek.json $OUT/torch-deepseek.json <<'PY'
import json, sys
o = json.load(open(sys.argv[1])); e = o["eval"]
print(f"ours: {e['tokens_per_s']:.0f} tokens/s ({e['seconds']:.4f} s), a layer {e['layer_s'] * 1e3:.2f} ms, head {e['head_s'] * 1e3:.2f} ms, params {o['params']}")
try:
    t = json.load(open(sys.argv[2]))
    print(f"bf16 GEMM roofline {t['bf16_gemm_tflops']:.0f} TFLOP/s")
    for k in ("sdpa", "eager"):
        r = t[k]
        print(f"torch {k}: {r['tokens_per_s']:.0f} tokens/s; ours / torch = {e['tokens_per_s'] / r['tokens_per_s']:.2f}x")
except Exception as ex:
    print("torch:", ex)
PY
D=$B/d4; M=tests/fixtures/phi3-longrope; R=/tmp/res; rm -rf $R; mkdir -p $R
$Q -q quantize $M --preset Q4_K_M -o $R/q4.gguf > /dev/null 2>&1
for dev in cpu gpu; do
  flag=""; [ $dev = gpu ] && flag=--gpu
  timeout 120 $Q -q compare $M $R/q4.gguf --text $D/eval.txt --ctx 256 --chunks 4 --json $flag > $OUT/c-phi3-$dev.json 2> $R/err || tail -3 $R/err
done
python3 -c "
import json
for d in ('cpu', 'gpu'):
    j = json.load(open('$OUT/c-phi3-%s.json' % d)); print('compare phi3-longrope Q4_K_M', d, 'ppl %.5f KLD %.6f' % (j['ppl'], j['kld']['mean']))"
