// Llama (LlamaForCausalLM, GGUF "llama"): RMSNorm, GQA with normal RoPE on q/k rows the GGUF
// stores permuted, optional q/k/v biases (use_qkv_bias), SwiGLU MLP.
#include "model/families/blocks.h"

namespace quantlens {

const Family& llama_family() {
    static const Family f{{Arch::Llama, "llama", "LlamaForCausalLM", "llama", "llama"},
                          {.read_hf = blocks::read_hf_llama,
                           .claims_gguf = [](const ModelConfig& c) { return !c.is_moe(); },
                           .read_gguf = blocks::read_gguf_dense_ffn,
                           .write_gguf = blocks::write_gguf_llama},
                          blocks::concat({blocks::norms_and_attention(), blocks::dense_mlp()})};
    return f;
}

}  // namespace quantlens
