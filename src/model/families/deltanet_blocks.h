// Shared pieces of the Gated DeltaNet hybrids (Qwen3-Next, Qwen3.5 dense and MoE): their
// tensor names, config keys and GGUF keys as llama.cpp's converter writes them
// (convert_hf_to_gguf's Qwen3NextModel and its Qwen3.5 subclasses). The families themselves
// are qwen3next.cpp and qwen35.cpp.
//
// Layout the engine reads (engine/layers/hybrid_layer.cpp), per layer:
//  - both kinds: attn_norm (input_layernorm), post_attention_norm (the pre-FFN
//    post_attention_layernorm), then the dense MLP or the MoE with shared expert;
//  - full attention: attn_q [C, 2·H·D] (each head's query then its output gate), attn_k,
//    attn_v, attn_q_norm, attn_k_norm, attn_output;
//  - Gated DeltaNet: attn_qkv [C, 2·nk·dk + nv·dv] (all q heads, all k heads, all v heads),
//    attn_gate [C, nv·dv] (z), ssm_ba or ssm_beta + ssm_alpha, ssm_conv1d [K, conv channels],
//    ssm_dt.bias [nv], ssm_a [nv] (= −exp(A_log)), ssm_norm [dv], ssm_out [nv·dv, C].
// Zero-centred RMSNorm weights (every *norm.weight but linear_attn.norm) are stored as 1 + w.
#pragma once

#include "model/families/blocks.h"

namespace quantlens::deltanet {

// Tensors shared by every hybrid: the two norms, gated full attention with q/k norms, and the
// Gated DeltaNet's conv, dt bias, A, gated norm and output projection.
std::vector<TensorName> common_layer();
// Qwen3-Next's fused in_proj_qkvz (split into attn_qkv and attn_gate) and in_proj_ba.
std::vector<TensorName> fused_projections();
// Qwen3.5's in_proj_qkv, in_proj_z, in_proj_b, in_proj_a.
std::vector<TensorName> split_projections();

// config.json: layer_types (or full_attention_interval), linear_* sizes, partial rotary
// (default 0.25 as transformers), the (1 + w) norms; refuses what the engine lacks.
void read_hf_hybrid(const HfConfigJson& cfg, ModelConfig& config);
// config.json: the routed MoE with its shared expert (moe_intermediate_size,
// shared_expert_intermediate_size); `renormalize` is norm_topk_prob's value.
void read_hf_moe(const HfConfigJson& cfg, ModelConfig& config, bool renormalize);
// GGUF: ssm.* keys, full_attention_interval, rope dims; refuses nextn (MTP) layers.
void read_gguf_hybrid(const GgufFile& gguf, ModelConfig& config);
void read_gguf_moe(const GgufFile& gguf, ModelConfig& config);
// The converter's keys: TextModel's (with Qwen3.5's rope.dimension_sections from
// mrope_section, expert counts, head size), Qwen2MoeModel's expert widths (when MoE), then
// ssm.conv_kernel, ssm.state_size, ssm.group_count, ssm.time_step_rank, ssm.inner_size,
// full_attention_interval, rope.dimension_count (and Qwen3.5's default sections when the
// config has none). MTP layers are dropped, so nextn_predict_layers is not written.
void write_gguf_hybrid(const ModelConfig& config, GgufKeys& keys);

}  // namespace quantlens::deltanet
