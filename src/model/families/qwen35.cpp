// Qwen3.5 text models: dense (Qwen3_5ForCausalLM, model_type qwen3_5_text, GGUF "qwen35")
// and MoE (Qwen3_5MoeForCausalLM, qwen3_5_moe_text, GGUF "qwen35moe"). Qwen3-Next's hybrid
// layer (qwen3next.cpp) with split DeltaNet projections (in_proj_qkv, in_proj_z, in_proj_b,
// in_proj_a), a dense SwiGLU MLP or a MoE whose top-k weights are always renormalized, and
// interleaved M-RoPE, which for text (equal positions in every section) is plain neox RoPE.
// The converter reorders the value heads from grouped (per q/k head) to tiled order, so a
// GGUF's value head h reads q/k head h % linear_num_key_heads (ModelConfig::ssm_v_tiled).
// The vision tower (Qwen3_5*ForConditionalGeneration) is not registered and so refused by
// name; MTP heads (mtp.*) are dropped, as the converter's --no-mtp does, and a GGUF with
// NextN layers is refused.
#include <utility>

#include "model/families/deltanet_blocks.h"

namespace quantlens {

namespace {

void set_layer(ModelConfig& c) {
    c.ssm_v_tiled = true;
    c.ssm_fused_ba = false;
}

// The hybrid layer, then the dense MLP's width or the MoE (top-k always renormalized).
template <bool kMoe>
void read_hf(const HfConfigJson& cfg, ModelConfig& c) {
    deltanet::read_hf_hybrid(cfg, c);
    if constexpr (kMoe)
        deltanet::read_hf_moe(cfg, c, true);
    else
        blocks::read_hf_dense_ffn(cfg, c);
    set_layer(c);
}

template <bool kMoe>
void read_gguf(const GgufFile& g, ModelConfig& c) {
    deltanet::read_gguf_hybrid(g, c);
    if constexpr (kMoe)
        deltanet::read_gguf_moe(g, c);
    else
        blocks::read_gguf_dense_ffn(g, c);
    set_layer(c);
}

// The dense and MoE families differ only in their identity and in what follows the hybrid
// layer: the dense MLP or the MoE with its shared expert.
template <bool kMoe>
Family qwen35_family_of(FamilyIdentity identity) {
    return Family{
        std::move(identity),
        {.read_hf = read_hf<kMoe>,
         .read_gguf = read_gguf<kMoe>,
         .write_gguf = deltanet::write_gguf_hybrid},
        blocks::concat({deltanet::common_layer(), deltanet::split_projections(),
                        kMoe ? blocks::qwen_moe_with_shared_expert() : blocks::dense_mlp()})};
}

}  // namespace

const Family& qwen35_family() {
    static const Family f = qwen35_family_of<false>(
        {Arch::Qwen35, "qwen35", "Qwen3_5ForCausalLM", "qwen3_5_text", "qwen35"});
    return f;
}

const Family& qwen35moe_family() {
    static const Family f = qwen35_family_of<true>(
        {Arch::Qwen35Moe, "qwen35moe", "Qwen3_5MoeForCausalLM", "qwen3_5_moe_text", "qwen35moe"});
    return f;
}

}  // namespace quantlens
