// Mixtral (MixtralForCausalLM, GGUF "llama" with experts): Mistral's attention with a routed
// MoE of SwiGLU experts (softmax → top-k → renormalize), no shared expert.
#include "model/families/blocks.h"

namespace quantlens {

namespace {

void read_hf(const HfConfigJson& cfg, ModelConfig& c) {
    blocks::read_hf_llama_attention(cfg, c);
    c.sliding_window = cfg.get_int("sliding_window", 0);
    blocks::read_hf_experts(cfg, c);
    blocks::read_hf_dense_ffn(cfg, c);  // intermediate_size is the per-expert width
    c.moe_renormalize = true;
}

}  // namespace

const Family& mixtral_family() {
    static const Family f{
        .id = Arch::Mixtral,
        .name = "mixtral",
        .hf_architecture = "MixtralForCausalLM",
        .model_type = "mixtral",
        .gguf_arch = "llama",
        .globals = blocks::llama_globals(),
        .layer_tensors = blocks::concat({blocks::norms_and_attention(), blocks::mixtral_moe()}),
        .read_hf = read_hf,
        .claims_gguf = [](const ModelConfig& c) { return c.is_moe(); },
        .read_gguf = blocks::read_gguf_dense_ffn,
        .write_gguf = blocks::write_gguf_llama,
    };
    return f;
}

}  // namespace quantlens
