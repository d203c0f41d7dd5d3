#!/usr/bin/env python3
"""Writes a Qwen3.5-shaped (Gated DeltaNet hybrid, dense) Hugging Face checkpoint with
transformers' own random initialization, for timing only (its outputs mean nothing), to argv[1],
with the tokenizer of the model directory argv[2]. Run on the GPU machine:
    python3 bench/make_qwen35_shape.py OUT_DIR TOKENIZER_MODEL_DIR [LAYERS]

The shape is ours, in the range of the published 2B-4B Qwen3.5 text models: hidden 2048, 3
linear-attention layers to each full one, 16 q/k and 32 value heads of 128 in the DeltaNet, 16
query and 2 KV heads of 256 in the gated attention (rotary over a quarter), MLP 6144,
vocabulary 151,936.
"""
import sys

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from shape_common import save_shape

out, tok = sys.argv[1], sys.argv[2]
layers = int(sys.argv[3]) if len(sys.argv) > 3 else 24
cfg = AutoConfig.for_model(
    "qwen3_5_text",
    hidden_size=2048,
    intermediate_size=6144,
    num_hidden_layers=layers,
    layer_types=["full_attention" if (i + 1) % 4 == 0 else "linear_attention" for i in range(layers)],
    num_attention_heads=16,
    num_key_value_heads=2,
    head_dim=256,
    linear_num_key_heads=16,
    linear_num_value_heads=32,
    linear_key_head_dim=128,
    linear_value_head_dim=128,
    linear_conv_kernel_dim=4,
    vocab_size=151936,
    rms_norm_eps=1e-6,
    tie_word_embeddings=False,
    max_position_embeddings=8192,
    rope_parameters={"rope_type": "default", "rope_theta": 10000000.0, "partial_rotary_factor": 0.25},
    eos_token_id=1,
)
cfg.architectures = ["Qwen3_5ForCausalLM"]
torch.manual_seed(0)
with torch.device("cuda"):
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
save_shape(model, out, tok)
