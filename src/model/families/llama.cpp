// Llama (LlamaForCausalLM, GGUF "llama"): RMSNorm, GQA with normal RoPE on q/k rows the GGUF
// stores permuted, optional q/k/v biases (use_qkv_bias), SwiGLU MLP.
#include "model/families/blocks.h"

namespace quantlens {

namespace {

void read_hf(const HfConfigJson& cfg, ModelConfig& c) {
    blocks::read_hf_llama_attention(cfg, c);
    blocks::refuse_hf_sliding_window(cfg);
    blocks::read_hf_dense_ffn(cfg, c);
}

}  // namespace

const Family& llama_family() {
    static const Family f{
        .id = Arch::Llama,
        .name = "llama",
        .hf_architecture = "LlamaForCausalLM",
        .model_type = "llama",
        .gguf_arch = "llama",
        .globals = blocks::llama_globals(),
        .layer_tensors = blocks::concat({blocks::norms_and_attention(), blocks::dense_mlp()}),
        .read_hf = read_hf,
        .claims_gguf = [](const ModelConfig& c) { return !c.is_moe(); },
        .read_gguf = blocks::read_gguf_dense_ffn,
        .write_gguf = blocks::write_gguf_llama,
    };
    return f;
}

}  // namespace quantlens
