// Shared pieces of the families (see blocks.h).
#include "model/families/blocks.h"

#include "core/error.h"

namespace quantlens::blocks {

std::vector<GlobalTensorName> llama_globals() {
    return {{"model.embed_tokens.weight", "token_embd.weight"},
            {"model.norm.weight", "output_norm.weight"},
            {"lm_head.weight", "output.weight"}};
}

std::vector<TensorName> norms_and_attention() {
    return {{"input_layernorm", "attn_norm"}, {"post_attention_layernorm", "ffn_norm"},
            {"self_attn.q_proj", "attn_q"},   {"self_attn.k_proj", "attn_k"},
            {"self_attn.v_proj", "attn_v"},   {"self_attn.o_proj", "attn_output"}};
}

std::vector<TensorName> qk_norm() {
    return {{"self_attn.q_norm", "attn_q_norm"}, {"self_attn.k_norm", "attn_k_norm"}};
}

std::vector<TensorName> dense_mlp() {
    return {
        {"mlp.gate_proj", "ffn_gate"}, {"mlp.up_proj", "ffn_up"}, {"mlp.down_proj", "ffn_down"}};
}

std::vector<TensorName> mixtral_moe() {
    return {{"block_sparse_moe.gate", "ffn_gate_inp"},
            {"block_sparse_moe.experts.{E}.w1", "ffn_gate_exps"},
            {"block_sparse_moe.experts.{E}.w3", "ffn_up_exps"},
            {"block_sparse_moe.experts.{E}.w2", "ffn_down_exps"}};
}

std::vector<TensorName> qwen_moe() {
    return {{"mlp.gate", "ffn_gate_inp"},
            {"mlp.experts.{E}.gate_proj", "ffn_gate_exps"},
            {"mlp.experts.{E}.up_proj", "ffn_up_exps"},
            {"mlp.experts.{E}.down_proj", "ffn_down_exps"}};
}

std::vector<TensorName> concat(std::initializer_list<std::vector<TensorName>> groups) {
    std::vector<TensorName> out;
    for (const auto& g : groups) out.insert(out.end(), g.begin(), g.end());
    return out;
}

void read_hf_dense_ffn(const HfConfigJson& cfg, ModelConfig& c) {
    c.ffn = cfg.require_positive("intermediate_size");
}

void read_hf_experts(const HfConfigJson& cfg, ModelConfig& c) {
    c.n_experts = cfg.get_int("num_local_experts", cfg.get_int("num_experts", 0));
    c.n_experts_used = cfg.get_int("num_experts_per_tok", 0);
    QL_CHECK(c.n_experts > 0, "{}: MoE architecture without num_local_experts/num_experts",
             cfg.path);
}

void read_hf_llama_attention(const HfConfigJson& cfg, ModelConfig& c) {
    const bool attention_bias = cfg.get_bool("attention_bias", false);
    QL_CHECK(!attention_bias,
             "{}: \"attention_bias\" is true; {} then also biases o_proj, which the engine does "
             "not apply",
             cfg.path, cfg.family);
    c.qkv_bias = cfg.get_bool("use_qkv_bias", false);
}

void refuse_hf_sliding_window(const HfConfigJson& cfg) {
    QL_CHECK(!cfg.get_bool("use_sliding_window", false),
             "{}: \"use_sliding_window\" is true; per-layer sliding windows of {} are not "
             "implemented",
             cfg.path, cfg.family);
}

int64_t gguf_int(const GgufFile& g, const ModelConfig& c, const char* key, int64_t fallback) {
    const GgufValue* v = g.find(c.gguf_arch + "." + key);
    return v ? v->as_int() : fallback;
}

int64_t gguf_required(const GgufFile& g, const ModelConfig& c, const char* key) {
    const std::string name = c.gguf_arch + "." + key;
    const int64_t v = g.get(name).as_int();
    QL_CHECK(v > 0, "{}: {} is {}, expected a positive integer", g.path(), name, v);
    return v;
}

void read_gguf_dense_ffn(const GgufFile& g, ModelConfig& c) {
    c.ffn = gguf_required(g, c, "feed_forward_length");
}

void add_u32(GgufKeys& keys, const ModelConfig& c, const char* key, int64_t value) {
    keys.emplace_back(c.gguf_arch + "." + key, GgufValue::u32(static_cast<uint32_t>(value)));
}

void write_gguf_head(const ModelConfig& c, GgufKeys& keys) {
    add_u32(keys, c, "block_count", c.n_layers);
    add_u32(keys, c, "context_length", c.max_positions);
    add_u32(keys, c, "embedding_length", c.hidden);
    add_u32(keys, c, "feed_forward_length", c.ffn);
    add_u32(keys, c, "attention.head_count", c.n_heads);
    add_u32(keys, c, "attention.head_count_kv", c.n_kv_heads);
    keys.emplace_back(c.gguf_arch + ".rope.freq_base",
                      GgufValue::f32(static_cast<float>(c.rope_theta)));
    keys.emplace_back(c.gguf_arch + ".attention.layer_norm_rms_epsilon",
                      GgufValue::f32(static_cast<float>(c.rms_eps)));
    if (c.is_moe()) {
        add_u32(keys, c, "expert_count", c.n_experts);
        add_u32(keys, c, "expert_used_count", c.n_experts_used);
    }
}

void write_gguf_head_size(const ModelConfig& c, GgufKeys& keys) {
    add_u32(keys, c, "attention.key_length", c.head_dim);
    add_u32(keys, c, "attention.value_length", c.head_dim);
}

void write_gguf_llama(const ModelConfig& c, GgufKeys& keys) {
    write_gguf_head(c, keys);
    write_gguf_head_size(c, keys);
    add_u32(keys, c, "vocab_size", c.vocab);
    add_u32(keys, c, "rope.dimension_count", c.head_dim);
}

void write_gguf_plain(const ModelConfig& c, GgufKeys& keys) {
    write_gguf_head(c, keys);
    write_gguf_head_size(c, keys);
}

}  // namespace quantlens::blocks
