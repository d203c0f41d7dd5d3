// GLM-4.5 / 4.6 (Glm4MoeForCausalLM; GGUF "glm4moe", as llama.cpp's Glm4MoeModel converter
// writes it): GQA attention with q/k/v biases (attention_bias), optional per-head q/k
// RMSNorm (use_qk_norm) and neox rope over the first partial_rotary_factor of each head, then
// the leading dense layers and DeepSeek-V3's sigmoid-routed MoE with a shared expert
// (sigmoid_moe.h).
//
// Multi-token-prediction layers (num_nextn_predict_layers) are skipped: the HF source leaves
// them out and the GGUF written has num_hidden_layers blocks and nextn_predict_layers 0 (the
// converter keeps them as extra blocks, which llama.cpp's forward pass does not run; for a
// config without such layers both write the same); a GGUF that holds them is refused.
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/families/blocks.h"
#include "model/families/sigmoid_moe.h"

namespace quantlens {

namespace {

void read_hf(const HfConfigJson& cfg, ModelConfig& c) {
    c.qkv_bias = cfg.get_bool("attention_bias", false);  // q/k/v only; o_proj has none
    c.qk_norm = cfg.get_bool("use_qk_norm", false);
    c.hf_has_head_dim = cfg.j.contains("head_dim") && !cfg.j.at("head_dim").is_null();
    c.rope = RopeStyle::Neox;
    c.ffn_norm_post_attention = true;
    sigmoid_moe::read_hf(cfg, c);
}

void read_gguf(const GgufFile& g, ModelConfig& c) {
    c.rope = RopeStyle::Neox;
    c.ffn_norm_post_attention = true;
    sigmoid_moe::read_gguf(g, c);
}

void write_gguf(const ModelConfig& c, GgufKeys& keys) {
    sigmoid_moe::check_for_llama_cpp(c);
    sigmoid_moe::write_gguf_text_model(c, keys, c.n_kv_heads, c.n_layers);
    blocks::add_u32(keys, c, "rope.dimension_count", c.rotary_dims());
    sigmoid_moe::put(keys, c, "expert_count", GgufValue::u32(static_cast<uint32_t>(c.n_experts)));
    blocks::add_u32(keys, c, "expert_feed_forward_length", c.ffn);
    blocks::add_u32(keys, c, "expert_shared_count", c.shared_expert_ffn / c.ffn);
    blocks::add_u32(keys, c, "leading_dense_block_count", c.n_dense_layers);
    sigmoid_moe::put(keys, c, "expert_gating_func", GgufValue::u32(2));  // sigmoid
    blocks::add_f32(keys, c, "expert_weights_scale", c.moe_weights_scale);
    keys.emplace_back(c.gguf_arch + ".expert_weights_norm", GgufValue::boolean(c.moe_renormalize));
    // The multi-token-prediction layers are not written (see the top): none to announce.
    if (c.hf_has_nextn) blocks::add_u32(keys, c, "nextn_predict_layers", 0);
}

}  // namespace

const Family& glm4moe_family() {
    static const Family f{
        {Arch::Glm4Moe, "glm4moe", "Glm4MoeForCausalLM", "glm4_moe", "glm4moe"},
        {.read_hf = read_hf, .read_gguf = read_gguf, .write_gguf = write_gguf},
        // gguf-py's GLM4_MOE has ATTN_POST_NORM and no FFN_NORM: the pre-MLP norm is
        // post_attention_norm (LayerSpec::ffn_norm_post_attention).
        blocks::concat({blocks::post_norm_attention(), blocks::qk_norm(), sigmoid_moe::tensors()})};
    return f;
}

}  // namespace quantlens
