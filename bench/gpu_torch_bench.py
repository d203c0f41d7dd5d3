#!/usr/bin/env python3
"""PyTorch + transformers baseline for bench/gpu_bench.sh: a Llama-3-8B-shaped
LlamaForCausalLM with random BF16 weights on the GPU, full-sequence forward over the same
token count and context as ql_gpu_bench, eager and SDPA attention, plus a bf16 GEMM roofline
(8192^3 matmul) measured in the same process. Prints one JSON object."""
import argparse
import json
import time

import torch
import transformers
from transformers import (DeepseekV3Config, DeepseekV3ForCausalLM, LlamaConfig,
                          LlamaForCausalLM)


def build(cfg_kwargs, impl, deepseek=False):
    cfg = (DeepseekV3Config if deepseek else LlamaConfig)(**cfg_kwargs)
    cfg._attn_implementation = impl
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = (DeepseekV3ForCausalLM if deepseek else LlamaForCausalLM)(cfg)
    torch.set_default_dtype(torch.float32)
    model.eval()
    return model


def timed(fn, reps):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json")
    ap.add_argument("--deepseek-v3-layers", type=int, default=0,
                    help="DeepSeek-V3's MLA and dense MLP (first_k_dense_replace layers only)")
    a = ap.parse_args()
    cfg = dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336,
               num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
               head_dim=128, rms_norm_eps=1e-5, rope_theta=500000.0,
               max_position_embeddings=8192, tie_word_embeddings=False)
    if a.deepseek_v3_layers:
        n = a.deepseek_v3_layers
        cfg = dict(vocab_size=129280, hidden_size=7168, intermediate_size=18432,
                   num_hidden_layers=n, first_k_dense_replace=n, num_attention_heads=128,
                   num_key_value_heads=128, q_lora_rank=1536, kv_lora_rank=512,
                   qk_rope_head_dim=64, qk_nope_head_dim=128, v_head_dim=128,
                   rms_norm_eps=1e-6, rope_theta=10000.0, max_position_embeddings=8192,
                   tie_word_embeddings=False, n_routed_experts=8, num_experts_per_tok=2,
                   moe_intermediate_size=256)
    out = {"torch": torch.__version__, "transformers": transformers.__version__,
           "device": torch.cuda.get_device_name()}
    n = 8192
    x = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    y = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    t = timed(lambda: x @ y, 10)
    out["bf16_gemm_tflops"] = 2 * n ** 3 / t / 1e12
    del x, y
    ids = torch.randint(0, cfg["vocab_size"], (a.tokens // a.ctx, a.ctx), device="cuda")
    for impl in ("sdpa", "eager"):
        model = build(cfg, impl, a.deepseek_v3_layers > 0)
        params = sum(p.numel() for p in model.parameters())
        with torch.inference_mode():
            t = timed(lambda: model(input_ids=ids, use_cache=False).logits, a.reps)
        tokens = ids.numel()
        out[impl] = {"seconds": t, "tokens_per_s": tokens / t,
                     "tflops_2x_params": 2 * params * tokens / t / 1e12,
                     "attn_implementation": model.config._attn_implementation}
        out["params"] = params
        del model
        torch.cuda.empty_cache()
    text = json.dumps(out, indent=2)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
