// Shared pieces families are assembled from (family.h): tensor-name groups, config readers
// for the common FFN/MoE/attention keys, and the GGUF key groups in the converter's order.
// A family combines these; a piece used by one family only stays in that family's file.
#pragma once

#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "model/families/family.h"

namespace quantlens::blocks {

// self_attn.{q,k,v,o}_proj ↔ attn_{q,k,v,output} (biases by suffix).
std::vector<TensorName> attention();
// input_layernorm, post_attention_layernorm (ffn_norm), then attention().
std::vector<TensorName> norms_and_attention();
// input_layernorm, post_attention_layernorm ↔ post_attention_norm (the pre-FFN norm of
// gpt-oss, GLM-4.5 and the DeltaNet hybrids), then attention().
std::vector<TensorName> post_norm_attention();
std::vector<TensorName> qk_norm();    // self_attn.{q,k}_norm
std::vector<TensorName> dense_mlp();  // mlp.{gate,up,down}_proj
// Router and stacked experts, Mixtral spelling (block_sparse_moe.gate, experts.{E}.w1/w3/w2).
std::vector<TensorName> mixtral_moe();
// Router and stacked experts, Qwen spelling (mlp.gate, mlp.experts.{E}.*_proj).
std::vector<TensorName> qwen_moe();
// qwen_moe() plus Qwen's shared expert (mlp.shared_expert.*_proj ↔ ffn_*_shexp) and its
// sigmoid gate (mlp.shared_expert_gate ↔ ffn_gate_inp_shexp).
std::vector<TensorName> qwen_moe_with_shared_expert();
// Phi-3's fused projections: self_attn.qkv_proj ↔ attn_qkv, mlp.gate_up_proj ↔ ffn_up, with
// input_layernorm, post_attention_layernorm (ffn_norm), o_proj and down_proj.
std::vector<TensorName> fused_attention_and_mlp();
// Gemma 2/3: the four norms (input_layernorm ↔ attn_norm, post_attention_layernorm ↔
// post_attention_norm, pre_feedforward_layernorm ↔ ffn_norm, post_feedforward_layernorm ↔
// post_ffw_norm), q/k/v/o and the dense MLP.
std::vector<TensorName> gemma_layer();
std::vector<TensorName> concat(std::initializer_list<std::vector<TensorName>> groups);

// config.json: intermediate_size as the FFN width.
void read_hf_dense_ffn(const HfConfigJson& cfg, ModelConfig& config);
// config.json: num_local_experts | num_experts (required > 0) and num_experts_per_tok.
void read_hf_experts(const HfConfigJson& cfg, ModelConfig& config);
// config.json: refuses attention_bias (which also biases o_proj in these families); q/k/v
// biases come from use_qkv_bias.
void read_hf_llama_attention(const HfConfigJson& cfg, ModelConfig& config);
// config.json: refuses use_sliding_window (per-layer windows are not implemented).
void refuse_hf_sliding_window(const HfConfigJson& cfg);
// config.json, Llama: read_hf_llama_attention, refuse_hf_sliding_window, read_hf_dense_ffn.
void read_hf_llama(const HfConfigJson& cfg, ModelConfig& config);
// config.json, Mistral and Mixtral: read_hf_llama_attention and sliding_window, one window
// for every layer.
void read_hf_mistral_attention(const HfConfigJson& cfg, ModelConfig& config);

// config.json's "layer_types": one flag per layer, true for `marked` ("sliding_attention",
// "linear_attention") and false for "full_attention"; another type is refused with `known`
// (what this family has) and a list of another length by its length. Without the key (or
// null), layer l is `marked` when (l + 1) % period() != 0, transformers' default pattern;
// period() is called only then (it reads and checks its own key).
std::vector<bool> read_hf_layer_types(const HfConfigJson& cfg, int64_t n_layers, const char* marked,
                                      const std::string& known,
                                      const std::function<int64_t()>& period);

// config.json, Gemma 2 and 3: GeGLU, (1 + w) norms, post-norms, √hidden embedding scale,
// query_pre_attn_scalar, soft-capping, sliding_window with layer_types (else every layer i
// with (i + 1) % `default_pattern` != 0 slides, transformers' default), neox rope.
void read_hf_gemma(const HfConfigJson& cfg, ModelConfig& config, int64_t default_pattern);
// GGUF, Gemma 2 and 3: what llama.cpp's loader fixes for them (GeGLU, post-norms, embedding
// scale, neox rope, the sliding layers every `pattern`, the score scale by model size) and
// reads (sliding_window, soft-capping with these defaults).
void read_gguf_gemma(const GgufFile& gguf, ModelConfig& config, int64_t pattern, int64_t layers_27b,
                     double attn_softcap_default, double final_softcap_default);
// Refuses, naming the config key, a Gemma config llama.cpp would evaluate differently: a
// query_pre_attn_scalar other than the one its loader derives, layer types off its pattern.
void check_gemma_for_llama_cpp(const ModelConfig& config, int64_t pattern, int64_t layers_27b);
// Gemma 2 and 3's hooks: the family's own readers and writer, and the GeGLU (tanh) of
// transformers' Gemma code, so hidden_activation is checked against it.
FamilyHooks gemma_hooks(decltype(FamilyHooks::read_hf) read_hf,
                        decltype(FamilyHooks::read_gguf) read_gguf,
                        decltype(FamilyHooks::write_gguf) write_gguf);

// GGUF: ARCH.<key> as an integer, or `fallback` / an error naming the file and key.
int64_t gguf_int(const GgufFile& gguf, const ModelConfig& config, const char* key,
                 int64_t fallback);
int64_t gguf_required(const GgufFile& gguf, const ModelConfig& config, const char* key);
void read_gguf_dense_ffn(const GgufFile& gguf, ModelConfig& config);  // feed_forward_length
// feed_forward_length, and neox rope (qwen2, qwen3).
void read_gguf_dense_neox(const GgufFile& gguf, ModelConfig& config);

// block_count .. layer_norm_rms_epsilon, then expert_count/expert_used_count for MoE.
void write_gguf_head(const ModelConfig& config, GgufKeys& keys);
// block_count, context_length, embedding_length, feed_forward_length, attention.head_count,
// attention.head_count_kv: the converter's first keys (TextModel.set_gguf_parameters).
void write_gguf_sizes(const ModelConfig& config, GgufKeys& keys);
// attention.key_length, attention.value_length.
void write_gguf_head_size(const ModelConfig& config, GgufKeys& keys);
// The "llama" architecture's keys: head, head size, vocab_size, rope.dimension_count.
void write_gguf_llama(const ModelConfig& config, GgufKeys& keys);
// head and head size only (qwen2, qwen3).
void write_gguf_plain(const ModelConfig& config, GgufKeys& keys);
void add_u32(GgufKeys& keys, const ModelConfig& config, const char* key, int64_t value);
void add_f32(GgufKeys& keys, const ModelConfig& config, const char* key, double value);
// ARCH.<key> for each of `names` in the order given, each the one ModelConfig field every
// family writes under that key (block_count: n_layers, context_length: max_positions,
// attention.layer_norm_rms_epsilon: rms_eps as F32, ...; the table is in blocks.cpp). A
// family whose converter orders or picks these keys its own way lists them here.
void add_keys(GgufKeys& keys, const ModelConfig& config,
              std::initializer_list<std::string_view> names);
// expert_count and expert_used_count, for a MoE config only.
void add_expert_counts(GgufKeys& keys, const ModelConfig& config);
// rope.scaling.type "yarn", factor, original_context_length, and with `betas` the yarn
// beta_fast / beta_slow: the yarn keys of gpt-oss's and the sigmoid-MoE converters.
void add_yarn_keys(GgufKeys& keys, const ModelConfig& config, bool betas);

}  // namespace quantlens::blocks
