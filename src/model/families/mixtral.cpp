// Mixtral (MixtralForCausalLM, GGUF "llama" with experts): Mistral's attention with a routed
// MoE of SwiGLU experts (softmax → top-k → renormalize), no shared expert.
#include "model/families/blocks.h"

namespace quantlens {

namespace {

void read_hf(const HfConfigJson& cfg, ModelConfig& c) {
    blocks::read_hf_mistral_attention(cfg, c);
    blocks::read_hf_experts(cfg, c);
    blocks::read_hf_dense_ffn(cfg, c);  // intermediate_size is the per-expert width
    c.moe_renormalize = true;
}

}  // namespace

const Family& mixtral_family() {
    static const Family f{{Arch::Mixtral, "mixtral", "MixtralForCausalLM", "mixtral", "llama"},
                          {.read_hf = read_hf,
                           .claims_gguf = [](const ModelConfig& c) { return c.is_moe(); },
                           .read_gguf = blocks::read_gguf_dense_ffn,
                           .write_gguf = blocks::write_gguf_llama},
                          blocks::concat({blocks::norms_and_attention(), blocks::mixtral_moe()})};
    return f;
}

}  // namespace quantlens
