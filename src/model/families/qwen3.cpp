// Qwen3 (Qwen3ForCausalLM, GGUF "qwen3"): Llama's layer with a per-head RMSNorm of q and k
// before neox (half-split) RoPE on unpermuted q/k.
#include "model/families/blocks.h"

namespace quantlens {

namespace {

void read_hf(const HfConfigJson& cfg, ModelConfig& c) {
    blocks::read_hf_llama_attention(cfg, c);
    blocks::refuse_hf_sliding_window(cfg);
    blocks::read_hf_dense_ffn(cfg, c);
    c.rope = RopeStyle::Neox;
    c.qk_norm = true;
}

}  // namespace

const Family& qwen3_family() {
    static const Family f{
        .id = Arch::Qwen3,
        .name = "qwen3",
        .hf_architecture = "Qwen3ForCausalLM",
        .model_type = "qwen3",
        .gguf_arch = "qwen3",
        .globals = blocks::llama_globals(),
        .layer_tensors =
            blocks::concat({blocks::norms_and_attention(), blocks::qk_norm(), blocks::dense_mlp()}),
        .read_hf = read_hf,
        .claims_gguf = [](const ModelConfig&) { return true; },
        .read_gguf = blocks::read_gguf_dense_neox,
        .write_gguf = blocks::write_gguf_plain,
    };
    return f;
}

}  // namespace quantlens
