// Mistral (MistralForCausalLM): Llama's layer with a sliding attention window
// (sliding_window, enforced as a sequence-length limit). Its GGUF is "llama" and reads back
// as Llama, as in llama.cpp.
#include "model/families/blocks.h"

namespace quantlens {

namespace {

void read_hf(const HfConfigJson& cfg, ModelConfig& c) {
    blocks::read_hf_mistral_attention(cfg, c);
    blocks::read_hf_dense_ffn(cfg, c);
}

}  // namespace

const Family& mistral_family() {
    static const Family f{{Arch::Mistral, "mistral", "MistralForCausalLM", "mistral", "llama"},
                          {.read_hf = read_hf,
                           .claims_gguf = nullptr,  // never chosen from a GGUF
                           .read_gguf = blocks::read_gguf_dense_ffn,
                           .write_gguf = blocks::write_gguf_llama},
                          blocks::concat({blocks::norms_and_attention(), blocks::dense_mlp()})};
    return f;
}

}  // namespace quantlens
