// Qwen3 (Qwen3ForCausalLM, GGUF "qwen3"): Llama's layer with a per-head RMSNorm of q and k
// before neox (half-split) RoPE on unpermuted q/k.
#include "model/families/blocks.h"

namespace quantlens {

namespace {

void read_hf(const HfConfigJson& cfg, ModelConfig& c) {
    blocks::read_hf_llama(cfg, c);
    c.rope = RopeStyle::Neox;
    c.qk_norm = true;
}

}  // namespace

const Family& qwen3_family() {
    static const Family f{
        {Arch::Qwen3, "qwen3", "Qwen3ForCausalLM", "qwen3", "qwen3"},
        {.read_hf = read_hf,
         .read_gguf = blocks::read_gguf_dense_neox,
         .write_gguf = blocks::write_gguf_plain},
        blocks::concat({blocks::norms_and_attention(), blocks::qk_norm(), blocks::dense_mlp()})};
    return f;
}

}  // namespace quantlens
