// Mistral (MistralForCausalLM): Llama's layer with a sliding attention window
// (sliding_window, enforced as a sequence-length limit). Its GGUF is "llama" and reads back
// as Llama, as in llama.cpp.
#include "model/families/blocks.h"

namespace quantlens {

namespace {

void read_hf(const HfConfigJson& cfg, ModelConfig& c) {
    blocks::read_hf_llama_attention(cfg, c);
    c.sliding_window = cfg.get_int("sliding_window", 0);
    blocks::read_hf_dense_ffn(cfg, c);
}

}  // namespace

const Family& mistral_family() {
    static const Family f{
        .id = Arch::Mistral,
        .name = "mistral",
        .hf_architecture = "MistralForCausalLM",
        .model_type = "mistral",
        .gguf_arch = "llama",
        .globals = blocks::llama_globals(),
        .layer_tensors = blocks::concat({blocks::norms_and_attention(), blocks::dense_mlp()}),
        .read_hf = read_hf,
        .claims_gguf = nullptr,
        .read_gguf = blocks::read_gguf_dense_ffn,
        .write_gguf = blocks::write_gguf_llama,
    };
    return f;
}

}  // namespace quantlens
