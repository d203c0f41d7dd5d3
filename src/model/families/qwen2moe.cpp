// Qwen2-MoE (Qwen2MoeForCausalLM, GGUF "qwen2moe"): Qwen2's attention (q/k/v biases, neox
// RoPE) with a routed MoE (softmax → top-k, renormalized only when norm_topk_prob) plus a
// shared SwiGLU expert scaled by sigmoid(shared_expert_gate · x).
#include "model/families/blocks.h"

namespace quantlens {

namespace {

void set_layer(ModelConfig& c) {
    c.rope = RopeStyle::Neox;
    c.shared_expert = c.shared_expert_ffn > 0 ? SharedExpert::SigmoidGated : SharedExpert::None;
}

void read_hf(const HfConfigJson& cfg, ModelConfig& c) {
    blocks::refuse_hf_sliding_window(cfg);
    c.qkv_bias = true;
    blocks::read_hf_experts(cfg, c);
    c.ffn = cfg.require_positive("moe_intermediate_size");
    c.shared_expert_ffn = cfg.get_int("shared_expert_intermediate_size", 0);
    c.moe_renormalize = cfg.get_bool("norm_topk_prob", false);
    set_layer(c);
}

void read_gguf(const GgufFile& g, ModelConfig& c) {
    c.ffn = blocks::gguf_required(g, c, "expert_feed_forward_length");
    c.shared_expert_ffn = blocks::gguf_int(g, c, "expert_shared_feed_forward_length", 0);
    c.moe_renormalize = false;  // llama.cpp's qwen2moe graph keeps the top-k softmax weights
    set_layer(c);
}

void write_gguf(const ModelConfig& c, GgufKeys& keys) {
    blocks::write_gguf_head(c, keys);
    blocks::add_u32(keys, c, "expert_feed_forward_length", c.ffn);
    if (c.shared_expert_ffn > 0)
        blocks::add_u32(keys, c, "expert_shared_feed_forward_length", c.shared_expert_ffn);
    blocks::write_gguf_head_size(c, keys);
}

}  // namespace

const Family& qwen2moe_family() {
    static const Family f{
        {Arch::Qwen2Moe, "qwen2moe", "Qwen2MoeForCausalLM", "qwen2_moe", "qwen2moe"},
        {.read_hf = read_hf, .read_gguf = read_gguf, .write_gguf = write_gguf},
        blocks::concat({blocks::norms_and_attention(), blocks::qwen_moe_with_shared_expert()})};
    return f;
}

}  // namespace quantlens
