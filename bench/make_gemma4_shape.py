#!/usr/bin/env python3
"""Writes a Gemma-4-shaped (per-layer embeddings, KV sharing, K=V global layers) Hugging Face
checkpoint with transformers' own random initialization, for timing only (its outputs mean
nothing), to argv[1], with the tokenizer of the model directory argv[2]. Run on the GPU machine:
    python3 bench/make_gemma4_shape.py OUT_DIR TOKENIZER_MODEL_DIR [LAYERS]

The shape is ours, in the range of the published small ("E2B") Gemma 4 text models: hidden
1536, 35 layers in a 4:1 sliding/global pattern (window 512), 8 query heads, 1 KV head of 256
on sliding layers and of 512 with K=V on global ones (proportional rope over a quarter), MLP
6144 (double-wide on the 17 KV-shared layers), per-layer embeddings of 256, vocabulary 262,144;
q/k norm weights D^-1/4 (below).
The vocabulary is the model's, the tokenizer argv[2]'s (its ids stay below 262,144).
"""
import sys

import torch
import transformers as tf

from shape_common import save_shape

out, tok = sys.argv[1], sys.argv[2]
layers = int(sys.argv[3]) if len(sys.argv) > 3 else 35
SLIDING, FULL = "sliding_attention", "full_attention"
cfg = tf.Gemma4TextConfig(
    vocab_size=262144, vocab_size_per_layer_input=262144, hidden_size=1536,
    intermediate_size=6144, num_hidden_layers=layers,
    layer_types=[FULL if (i + 1) % 5 == 0 else SLIDING for i in range(layers)],
    num_attention_heads=8, num_key_value_heads=1, head_dim=256, global_head_dim=512,
    num_global_key_value_heads=1, attention_k_eq_v=True,
    hidden_size_per_layer_input=256, num_kv_shared_layers=min(20, layers // 2),
    use_double_wide_mlp=True, hidden_activation="gelu_pytorch_tanh",
    max_position_embeddings=32768, rms_norm_eps=1e-6, sliding_window=512,
    final_logit_softcapping=30.0, tie_word_embeddings=True, bos_token_id=2, eos_token_id=1,
    pad_token_id=0,
    rope_parameters={
        FULL: {"rope_type": "proportional", "rope_theta": 1000000.0, "partial_rotary_factor": 0.25},
        SLIDING: {"rope_type": "default", "rope_theta": 10000.0},
    },
)
cfg.architectures = ["Gemma4ForCausalLM"]
torch.manual_seed(0)
with torch.device("cuda"):
    model = tf.Gemma4ForCausalLM(cfg).to(torch.bfloat16)
# Gemma 4 scores q·k unscaled (its q/k norms set the scale). With the norms' initial weights of 1
# a random model's scores spread by √D (16 and 23 here), so any rounding flips which key a query
# attends to (F16 vs F32 measured KLD 0.17 on this shape); D^-1/4 gives scores of unit spread,
# as 1/√D scaling would.
with torch.no_grad():
    for layer in model.model.layers:
        a = layer.self_attn
        for norm in (getattr(a, "q_norm", None), getattr(a, "k_norm", None)):
            if norm is not None and getattr(norm, "weight", None) is not None:
                norm.weight.fill_(a.head_dim ** -0.25)
save_shape(model, out, tok)
