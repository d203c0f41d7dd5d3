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
    static const Family f{{Arch::Qwen2, "qwen2", "Qwen2ForCausalLM", "qwen2", "qwen2"},
                          {.read_hf = read_hf,
                           .read_gguf = blocks::read_gguf_dense_neox,
                           .write_gguf = blocks::write_gguf_plain},
                          blocks::concat({blocks::norms_and_attention(), blocks::dense_mlp()})};
    return f;
}

}  // namespace quantlens
