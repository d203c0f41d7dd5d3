// Qwen2 (Qwen2ForCausalLM, GGUF "qwen2"): Llama's layer with q/k/v biases always present
// and neox (half-split) RoPE on unpermuted q/k.
#include "model/families/blocks.h"

namespace quantlens {

namespace {

void read_hf(const HfConfigJson& cfg, ModelConfig& c) {
    // Qwen2's attention_bias means the q/k/v biases it always has: o_proj has none.
    blocks::refuse_hf_sliding_window(cfg);
    blocks::read_hf_dense_ffn(cfg, c);
    c.rope = RopeStyle::Neox;
    c.qkv_bias = true;
}

}  // namespace

const Family& qwen2_family() {
    static const Family f{
        .id = Arch::Qwen2,
        .name = "qwen2",
        .hf_architecture = "Qwen2ForCausalLM",
        .model_type = "qwen2",
        .gguf_arch = "qwen2",
        .globals = blocks::llama_globals(),
        .layer_tensors = blocks::concat({blocks::norms_and_attention(), blocks::dense_mlp()}),
        .read_hf = read_hf,
        .claims_gguf = [](const ModelConfig&) { return true; },
        .read_gguf = blocks::read_gguf_dense_neox,
        .write_gguf = blocks::write_gguf_plain,
    };
    return f;
}

}  // namespace quantlens
