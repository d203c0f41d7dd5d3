#!/usr/bin/env python3
"""Writes a Llama-shaped Hugging Face checkpoint with random BF16 weights (timing and memory
benchmarks only: its outputs mean nothing), with the tokenizer of a model directory.
Plain Python (no numpy, no torch): each weight is ±[2^-7, 2^-5) with a uniformly random
mantissa, drawn from a seeded generator, so the file is the same on every run.

  python3 bench/make_random_llama.py OUT_DIR TOKENIZER_MODEL_DIR [--layers 16] [--hidden 2048]
      [--ffn 5632] [--heads 16] [--kv-heads 4]

The defaults (16 layers, hidden 2048, FFN 5632, 16 heads of 128, 4 KV heads, the tokenizer's
vocabulary) give 738 M parameters with llama-8m's 4096-token vocabulary.
"""
import argparse
import json
import os
import random
import shutil
import struct

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("tokenizer_dir")
ap.add_argument("--layers", type=int, default=16)
ap.add_argument("--hidden", type=int, default=2048)
ap.add_argument("--ffn", type=int, default=5632)
ap.add_argument("--heads", type=int, default=16)
ap.add_argument("--kv-heads", type=int, default=4)
ap.add_argument("--seed", type=int, default=0)
args = ap.parse_args()

tok_cfg = json.load(open(os.path.join(args.tokenizer_dir, "config.json")))
L, C, F, H, KV = args.layers, args.hidden, args.ffn, args.heads, args.kv_heads
D, V = C // H, tok_cfg["vocab_size"]
rng = random.Random(args.seed)

# Byte 1 (high) of each BF16 value: sign from the random byte's top bit, exponent 120 or 121
# from byte 0's top bit (0x3C → 2^-7, with byte 0 ≥ 0x80 → 2^-6).
HIGH = bytes(0x3C | (b & 0x80) for b in range(256))


def random_bf16(count):
    data = bytearray(rng.randbytes(2 * count))
    data[1::2] = data[1::2].translate(HIGH)
    return bytes(data)


def ones_bf16(count):
    return b"\x80\x3f" * count


tensors = [("model.embed_tokens.weight", [V, C], random_bf16)]
for l in range(L):
    p = f"model.layers.{l}."
    tensors += [
        (p + "input_layernorm.weight", [C], ones_bf16),
        (p + "post_attention_layernorm.weight", [C], ones_bf16),
        (p + "self_attn.q_proj.weight", [H * D, C], random_bf16),
        (p + "self_attn.k_proj.weight", [KV * D, C], random_bf16),
        (p + "self_attn.v_proj.weight", [KV * D, C], random_bf16),
        (p + "self_attn.o_proj.weight", [C, H * D], random_bf16),
        (p + "mlp.gate_proj.weight", [F, C], random_bf16),
        (p + "mlp.up_proj.weight", [F, C], random_bf16),
        (p + "mlp.down_proj.weight", [C, F], random_bf16),
    ]
tensors += [("model.norm.weight", [C], ones_bf16), ("lm_head.weight", [V, C], random_bf16)]

header, offset = {"__metadata__": {"format": "pt"}}, 0
for name, shape, _ in tensors:
    size = 2
    for s in shape:
        size *= s
    header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + size]}
    offset += size
blob = json.dumps(header, separators=(",", ":")).encode()
blob += b" " * (-len(blob) % 8)

os.makedirs(args.out, exist_ok=True)
with open(os.path.join(args.out, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(blob)))
    f.write(blob)
    for name, shape, make in tensors:
        count = 1
        for s in shape:
            count *= s
        f.write(make(count))

config = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": C,
    "intermediate_size": F, "num_hidden_layers": L, "num_attention_heads": H,
    "num_key_value_heads": KV, "head_dim": D, "vocab_size": V, "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0, "max_position_embeddings": 2048, "tie_word_embeddings": False,
    "bos_token_id": tok_cfg.get("bos_token_id", 0), "eos_token_id": tok_cfg.get("eos_token_id", 1),
    "hidden_act": "silu", "torch_dtype": "bfloat16", "attention_bias": False, "mlp_bias": False,
}
json.dump(config, open(os.path.join(args.out, "config.json"), "w"), indent=1)
for name in ("tokenizer.json", "tokenizer_config.json"):
    src = os.path.join(args.tokenizer_dir, name)
    if os.path.exists(src):
        shutil.copy(src, args.out)
params = offset // 2
print(f"wrote {args.out}: {params / 1e6:.1f} M parameters, {offset / 1e9:.2f} GB")
