// DeepSeek-V3 (DeepseekV3ForCausalLM; DeepSeek-R1 and Kimi-K2 share it; GGUF "deepseek2", as
// llama.cpp's DeepseekV2Model converter writes it): multi-head latent attention — q through
// a q_lora_rank bottleneck, one latent kv of kv_lora_rank per token decompressed per head,
// a decoupled rope part of qk_rope_head_dim channels shared by all heads, rotated in
// interleaved pairs, yarn scaling with DeepSeek's mscale on the scores — then the leading
// dense layers and the sigmoid-routed MoE with a shared expert (sigmoid_moe.h).
//
// Not implemented, refused by name: q_lora_rank null (DeepSeek-V2-Lite's plain q_proj),
// attention_bias, rope_interleave false, num_key_value_heads ≠ num_attention_heads. The
// multi-token-prediction layers past num_hidden_layers are skipped, as the converter does.
#include <cmath>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/families/blocks.h"
#include "model/families/sigmoid_moe.h"

namespace quantlens {

namespace {

void set_layer(ModelConfig& c) {
    c.mla = true;
    c.rope = RopeStyle::Normal;  // interleaved pairs, on rows no converter permutes
    c.rope_dims = 0;
}

void read_hf(const HfConfigJson& cfg, ModelConfig& c) {
    QL_CHECK(cfg.j.contains("q_lora_rank") && !cfg.j.at("q_lora_rank").is_null(),
             "{}: \"q_lora_rank\" is null (a plain q_proj, as in DeepSeek-V2-Lite), which "
             "quantlens does not implement",
             cfg.path);
    c.q_lora_rank = cfg.require_positive("q_lora_rank");
    c.kv_lora_rank = cfg.require_positive("kv_lora_rank");
    c.qk_nope_dim = cfg.require_positive("qk_nope_head_dim");
    c.v_head_dim = cfg.require_positive("v_head_dim");
    const int64_t rope = cfg.require_positive("qk_rope_head_dim");
    c.hf_has_head_dim = cfg.j.contains("head_dim") && !cfg.j.at("head_dim").is_null();
    QL_CHECK(!cfg.get_bool("attention_bias", false),
             "{}: \"attention_bias\" is true; biases of q_a_proj, kv_a_proj_with_mqa and o_proj "
             "are not implemented",
             cfg.path);
    QL_CHECK(cfg.get_bool("rope_interleave", true),
             "{}: \"rope_interleave\" is false; quantlens implements DeepSeek's interleaved rope "
             "(and llama.cpp has no other for deepseek2)",
             cfg.path);
    QL_CHECK(c.n_kv_heads == c.n_heads,
             "{}: num_key_value_heads {} differs from num_attention_heads {}; MLA decompresses "
             "one latent kv for every head",
             cfg.path, c.n_kv_heads, c.n_heads);
    QL_CHECK(c.rope_dims == 0,
             "{}: partial_rotary_factor is set; DeepSeek's rope covers the "
             "qk_rope_head_dim channels",
             cfg.path);
    c.head_dim = rope;  // transformers' config.head_dim: the rotated part of q and k
    set_layer(c);
    sigmoid_moe::read_hf(cfg, c);
}

void read_gguf(const GgufFile& g, ModelConfig& c) {
    const std::string p = c.gguf_arch + ".";
    c.q_lora_rank = blocks::gguf_int(g, c, "attention.q_lora_rank", 0);
    QL_CHECK(c.q_lora_rank > 0,
             "{}: no {}attention.q_lora_rank (a plain attn_q, as in DeepSeek-V2-Lite), which "
             "quantlens does not implement",
             g.path(), p);
    c.kv_lora_rank = blocks::gguf_required(g, c, "attention.kv_lora_rank");
    const int64_t rope = blocks::gguf_required(g, c, "rope.dimension_count");
    const int64_t k_mla = blocks::gguf_required(g, c, "attention.key_length_mla");
    c.v_head_dim = blocks::gguf_required(g, c, "attention.value_length_mla");
    QL_CHECK(k_mla > rope, "{}: {}attention.key_length_mla {} is not above the rope part {}",
             g.path(), p, k_mla, rope);
    c.qk_nope_dim = k_mla - rope;
    c.head_dim = rope;
    c.n_kv_heads = c.n_heads;  // the converter writes MLA as one kv head (MQA)
    set_layer(c);
    sigmoid_moe::read_gguf(g, c);
}

void write_gguf(const ModelConfig& c, GgufKeys& keys) {
    sigmoid_moe::check_for_llama_cpp(c);
    QL_CHECK(c.hf_has_scoring_func,
             "{}: config.json has no \"scoring_func\"; llama.cpp's converter then writes no "
             "expert_gating_func and llama.cpp routes a deepseek2 file by softmax, while "
             "transformers uses sigmoid",
             c.hf_architecture);
    const RopeScaling& s = c.rope_scaling;
    QL_CHECK(s.kind != RopeScaling::Kind::Yarn || std::fabs(s.attention_factor - 1.0) < 1e-12,
             "{}: yarn with mscale {} ≠ mscale_all_dim {} scales cos/sin by {}, which llama.cpp's "
             "deepseek2 graph does not (it assumes the two equal)",
             c.hf_architecture, s.mscale, s.mscale_all_dim, s.attention_factor);
    sigmoid_moe::write_gguf_text_model(c, keys, 1, c.n_layers);
    blocks::add_u32(keys, c, "leading_dense_block_count", c.n_dense_layers);
    blocks::add_u32(keys, c, "vocab_size", c.vocab);
    blocks::add_u32(keys, c, "attention.q_lora_rank", c.q_lora_rank);
    blocks::add_u32(keys, c, "attention.kv_lora_rank", c.kv_lora_rank);
    sigmoid_moe::put(keys, c, "attention.key_length",
                     GgufValue::u32(static_cast<uint32_t>(c.kv_lora_rank + c.head_dim)));
    sigmoid_moe::put(keys, c, "attention.value_length",
                     GgufValue::u32(static_cast<uint32_t>(c.kv_lora_rank)));
    blocks::add_u32(keys, c, "attention.key_length_mla", c.qk_nope_dim + c.head_dim);
    blocks::add_u32(keys, c, "attention.value_length_mla", c.v_head_dim);
    blocks::add_u32(keys, c, "expert_feed_forward_length", c.ffn);
    sigmoid_moe::put(keys, c, "expert_count", GgufValue::u32(static_cast<uint32_t>(c.n_experts)));
    blocks::add_u32(keys, c, "expert_shared_count", c.shared_expert_ffn / c.ffn);
    blocks::add_f32(keys, c, "expert_weights_scale", c.moe_weights_scale);
    if (c.moe_renormalize)
        keys.emplace_back(c.gguf_arch + ".expert_weights_norm", GgufValue::boolean(true));
    blocks::add_u32(keys, c, "rope.dimension_count", c.head_dim);
    if (s.kind == RopeScaling::Kind::Yarn && s.mscale_all_dim > 0)
        blocks::add_f32(keys, c, "rope.scaling.yarn_log_multiplier", 0.1 * s.mscale_all_dim);
}

}  // namespace

const Family& deepseek_v3_family() {
    static const Family f{
        {Arch::DeepseekV3, "deepseek3", "DeepseekV3ForCausalLM", "deepseek_v3", "deepseek2"},
        {.read_hf = read_hf, .read_gguf = read_gguf, .write_gguf = write_gguf},
        blocks::concat({{{"input_layernorm", "attn_norm"},
                         {"post_attention_layernorm", "ffn_norm"},
                         {"self_attn.q_a_proj", "attn_q_a"},
                         {"self_attn.q_a_layernorm", "attn_q_a_norm"},
                         {"self_attn.q_b_proj", "attn_q_b"},
                         {"self_attn.kv_a_proj_with_mqa", "attn_kv_a_mqa"},
                         {"self_attn.kv_a_layernorm", "attn_kv_a_norm"},
                         // split by the source into attn_k_b and attn_v_b
                         {"self_attn.kv_b_proj", "attn_k_b"},
                         {"self_attn.kv_b_proj", "attn_v_b"},
                         {"self_attn.o_proj", "attn_output"}},
                        sigmoid_moe::tensors()})};
    return f;
}

}  // namespace quantlens
