// Shared pieces of the Gated DeltaNet hybrids (see deltanet_blocks.h).
#include "model/families/deltanet_blocks.h"

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace quantlens::deltanet {

std::vector<TensorName> common_layer() {
    return blocks::concat({blocks::post_norm_attention(),
                           blocks::qk_norm(),
                           {{"linear_attn.conv1d", "ssm_conv1d"},
                            // Bare parameters: A_log, and dt_bias, which becomes the bias of
                            // a tensor that has no weight.
                            {"linear_attn.A_log", "ssm_a", true},
                            {"linear_attn.dt_bias", "ssm_dt.bias", true},
                            {"linear_attn.norm", "ssm_norm"},
                            {"linear_attn.out_proj", "ssm_out"}}});
}

std::vector<TensorName> fused_projections() {
    return {{"linear_attn.in_proj_qkvz", "attn_qkv"},
            {"linear_attn.in_proj_qkvz", "attn_gate"},
            {"linear_attn.in_proj_ba", "ssm_ba"}};
}

std::vector<TensorName> split_projections() {
    return {{"linear_attn.in_proj_qkv", "attn_qkv"},
            {"linear_attn.in_proj_z", "attn_gate"},
            {"linear_attn.in_proj_b", "ssm_beta"},
            {"linear_attn.in_proj_a", "ssm_alpha"}};
}

namespace {

void set_layer(ModelConfig& c) {
    c.rope = RopeStyle::Neox;
    c.qk_norm = true;
}

// transformers' Qwen3NextConfig sets partial_rotary_factor 0.25 when the config has none.
bool has_partial_rotary(const nlohmann::json& j) {
    if (j.contains("partial_rotary_factor")) return true;
    for (const char* k : {"rope_parameters", "rope_scaling"}) {
        const auto it = j.find(k);
        if (it != j.end() && it->is_object() && it->contains("partial_rotary_factor")) return true;
    }
    return false;
}

}  // namespace

void read_hf_hybrid(const HfConfigJson& cfg, ModelConfig& c) {
    const auto& j = cfg.j;
    QL_CHECK(!cfg.get_bool("attention_bias", false),
             "{}: \"attention_bias\" is true; biased q/k/v/o projections of {} are not implemented",
             cfg.path, cfg.family);
    set_layer(c);
    c.hf_norm_offset = 1.0;  // zero-centred RMSNorm (1 + w); the converter stores 1 + w
    if (!has_partial_rotary(j)) c.rope_dims = c.head_dim / 4;
    c.ssm_conv_kernel = cfg.require_positive("linear_conv_kernel_dim");
    c.ssm_k_heads = cfg.require_positive("linear_num_key_heads");
    c.ssm_v_heads = cfg.require_positive("linear_num_value_heads");
    c.ssm_k_dim = cfg.require_positive("linear_key_head_dim");
    c.ssm_v_dim = cfg.require_positive("linear_value_head_dim");
    QL_CHECK(c.ssm_v_heads % c.ssm_k_heads == 0,
             "{}: linear_num_value_heads {} is not a multiple of linear_num_key_heads {}", cfg.path,
             c.ssm_v_heads, c.ssm_k_heads);
    const int64_t interval = cfg.get_int("full_attention_interval", 4);
    c.layer_linear = blocks::read_hf_layer_types(
        cfg, c.n_layers, "linear_attention",
        fmt::format("{} layers are linear_attention or full_attention", cfg.family), [&] {
            QL_CHECK(interval > 0, "{}: \"full_attention_interval\" is {}, expected positive",
                     cfg.path, interval);
            return interval;
        });
    // llama.cpp's loader derives the layer kinds from full_attention_interval alone.
    for (int64_t l = 0; l < c.n_layers; ++l)
        QL_CHECK(c.layer_linear[static_cast<size_t>(l)] == ((l + 1) % interval != 0),
                 "{}: layer_types[{}] breaks the every-{}th-layer full-attention pattern that "
                 "llama.cpp's loader assumes (full_attention_interval); a GGUF of this model "
                 "would be evaluated wrongly",
                 cfg.path, l, interval);
    if (const auto rp = j.find("rope_parameters"); rp != j.end() && rp->is_object()) {
        if (const auto ms = rp->find("mrope_section"); ms != rp->end() && ms->is_array())
            for (const auto& v : *ms) c.rope_sections.push_back(v.get<int64_t>());
    }
    c.hf_intermediate_size = cfg.get_int("intermediate_size", -1);
}

void read_hf_moe(const HfConfigJson& cfg, ModelConfig& c, bool renormalize) {
    blocks::read_hf_experts(cfg, c);
    c.ffn = cfg.require_positive("moe_intermediate_size");
    c.shared_expert_ffn = cfg.get_int("shared_expert_intermediate_size", 0);
    c.shared_expert = c.shared_expert_ffn > 0 ? SharedExpert::SigmoidGated : SharedExpert::None;
    c.moe_renormalize = renormalize;
    const auto only = cfg.j.find("mlp_only_layers");
    QL_CHECK(only == cfg.j.end() || only->is_null() || (only->is_array() && only->empty()),
             "{}: \"mlp_only_layers\" is {}; dense layers among {}'s MoE layers are not "
             "implemented",
             cfg.path, only->dump(), cfg.family);
    QL_CHECK(cfg.get_int("decoder_sparse_step", 1) == 1,
             "{}: \"decoder_sparse_step\" is {}; only every layer being MoE is implemented",
             cfg.path, cfg.get_int("decoder_sparse_step", 1));
}

void read_gguf_hybrid(const GgufFile& g, ModelConfig& c) {
    set_layer(c);
    QL_CHECK(blocks::gguf_int(g, c, "nextn_predict_layers", 0) == 0,
             "{}: {}.nextn_predict_layers is {}; MTP (NextN) layers are not supported", g.path(),
             c.gguf_arch, blocks::gguf_int(g, c, "nextn_predict_layers", 0));
    c.ssm_conv_kernel = blocks::gguf_required(g, c, "ssm.conv_kernel");
    c.ssm_k_dim = blocks::gguf_required(g, c, "ssm.state_size");
    c.ssm_k_heads = blocks::gguf_required(g, c, "ssm.group_count");
    c.ssm_v_heads = blocks::gguf_required(g, c, "ssm.time_step_rank");
    const int64_t inner = blocks::gguf_required(g, c, "ssm.inner_size");
    QL_CHECK(inner % c.ssm_v_heads == 0 && c.ssm_v_heads % c.ssm_k_heads == 0,
             "{}: {}.ssm.inner_size {} is not a multiple of ssm.time_step_rank {} (or that of "
             "ssm.group_count {})",
             g.path(), c.gguf_arch, inner, c.ssm_v_heads, c.ssm_k_heads);
    c.ssm_v_dim = inner / c.ssm_v_heads;
    const int64_t interval = blocks::gguf_int(g, c, "full_attention_interval", 4);
    QL_CHECK(interval > 0, "{}: {}.full_attention_interval is {}, expected positive", g.path(),
             c.gguf_arch, interval);
    c.layer_linear.assign(static_cast<size_t>(c.n_layers), false);
    for (int64_t l = 0; l < c.n_layers; ++l)
        c.layer_linear[static_cast<size_t>(l)] = (l + 1) % interval != 0;
    c.hf_intermediate_size = blocks::gguf_int(g, c, "feed_forward_length", -1);
    if (const GgufValue* s = g.find(c.gguf_arch + ".rope.dimension_sections"))
        c.rope_sections = s->as_int_array();
}

void read_gguf_moe(const GgufFile& g, ModelConfig& c) {
    c.ffn = blocks::gguf_required(g, c, "expert_feed_forward_length");
    c.shared_expert_ffn = blocks::gguf_int(g, c, "expert_shared_feed_forward_length", 0);
    c.shared_expert = c.shared_expert_ffn > 0 ? SharedExpert::SigmoidGated : SharedExpert::None;
    c.moe_renormalize = true;  // llama.cpp's qwen3next/qwen35moe graphs renormalize the top-k
}

void write_gguf_hybrid(const ModelConfig& c, GgufKeys& keys) {
    using blocks::add_u32;
    auto sections = [&](std::vector<int64_t> s) {  // padded to 4: time, height, width, extra
        s.resize(4, 0);
        const std::vector<int32_t> items(s.begin(), s.end());
        keys.emplace_back(c.gguf_arch + ".rope.dimension_sections", GgufValue::i32_array(items));
    };
    // TextModel.set_gguf_parameters
    blocks::add_keys(keys, c, {"block_count", "context_length", "embedding_length"});
    if (c.hf_intermediate_size > 0) add_u32(keys, c, "feed_forward_length", c.hf_intermediate_size);
    blocks::add_keys(keys, c, {"attention.head_count", "attention.head_count_kv"});
    if (!c.rope_sections.empty()) sections(c.rope_sections);
    blocks::add_keys(keys, c, {"rope.freq_base", "attention.layer_norm_rms_epsilon"});
    blocks::add_expert_counts(keys, c);
    blocks::write_gguf_head_size(c, keys);
    // Qwen2MoeModel.set_gguf_parameters
    if (c.is_moe()) {
        add_u32(keys, c, "expert_feed_forward_length", c.ffn);
        if (c.shared_expert_ffn > 0)
            add_u32(keys, c, "expert_shared_feed_forward_length", c.shared_expert_ffn);
    }
    // Qwen3NextModel.set_gguf_parameters
    add_u32(keys, c, "ssm.conv_kernel", c.ssm_conv_kernel);
    add_u32(keys, c, "ssm.state_size", c.ssm_k_dim);
    add_u32(keys, c, "ssm.group_count", c.ssm_k_heads);
    add_u32(keys, c, "ssm.time_step_rank", c.ssm_v_heads);
    add_u32(keys, c, "ssm.inner_size", c.ssm_v_heads * c.ssm_v_dim);
    int64_t interval = 0;  // the layer kinds are every interval-th layer full (read_hf_hybrid)
    for (int64_t l = 0; l < c.n_layers && interval == 0; ++l)
        if (!c.is_linear_layer(l)) interval = l + 1;
    add_u32(keys, c, "full_attention_interval", interval > 0 ? interval : 4);
    add_u32(keys, c, "rope.dimension_count", c.rotary_dims());
    // Qwen3.5's M-RoPE mixin: the default sections when the config has none.
    if (c.arch != Arch::Qwen3Next && c.rope_sections.empty()) sections({11, 11, 10});
}

}  // namespace quantlens::deltanet
