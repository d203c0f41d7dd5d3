// Pieces shared by the families with DeepSeek-V3's MoE (deepseek_v3.cpp, glm4moe.cpp): leading
// dense layers, routed experts chosen by sigmoid scores plus a correction bias within expert
// groups, an ungated shared expert, and the GGUF keys llama.cpp's converter writes for them.
//
// Promise: every config key that changes this computation is read or refused by name:
// first_k_dense_replace, n_routed_experts, num_experts_per_tok, moe_intermediate_size,
// intermediate_size, n_shared_experts, n_group, topk_group, norm_topk_prob,
// routed_scaling_factor, scoring_func (sigmoid only), topk_method (noaux_tc only),
// moe_layer_freq (1 only), mlp_layer_types (matching first_k_dense_replace only),
// num_nextn_predict_layers (those layers are skipped).
#pragma once

#include "model/families/family.h"

namespace quantlens::sigmoid_moe {

// dense_mlp, the router and stacked experts in Qwen's spelling, mlp.shared_experts.* ↔
// ffn_*_shexp and mlp.gate.e_score_correction_bias ↔ exp_probs_b.bias.
std::vector<TensorName> tensors();

void read_hf(const HfConfigJson& cfg, ModelConfig& config);
void read_gguf(const GgufFile& gguf, ModelConfig& config);

// A GGUF key written in place when the converter already wrote it (gguf-py overwrites a
// key's value and keeps its position), appended otherwise.
void put(GgufKeys& keys, const ModelConfig& config, const char* key, GgufValue value);

// TextModel.set_gguf_parameters for these configs: block_count .. expert_gating_func and
// the head size keys (only those config.json would give it), with head_count_kv as given.
void write_gguf_text_model(const ModelConfig& config, GgufKeys& keys, int64_t head_count_kv,
                           int64_t block_count);

// Throws Error when llama.cpp would route this config differently from transformers.
void check_for_llama_cpp(const ModelConfig& config);

}  // namespace quantlens::sigmoid_moe
