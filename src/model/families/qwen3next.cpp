// Qwen3-Next (Qwen3NextForCausalLM, GGUF "qwen3next"): a hybrid of Gated DeltaNet (linear
// attention) layers and, every full_attention_interval-th layer, gated full attention (the
// output × sigmoid of a per-head gate from q_proj, q/k RMSNorm, partial neox RoPE), each
// followed by a routed MoE (softmax → top-k, renormalized when norm_topk_prob) with a shared
// SwiGLU expert scaled by sigmoid(shared_expert_gate · x). The DeltaNet's q/k/v/z come from
// one in_proj_qkvz and its β/α inputs from one in_proj_ba, grouped per q/k head; the
// converter splits in_proj_qkvz into attn_qkv and attn_gate and keeps in_proj_ba (ssm_ba).
// MTP heads (mtp.*) are dropped, as the converter does.
#include "model/families/deltanet_blocks.h"

namespace quantlens {

namespace {

void read_hf(const HfConfigJson& cfg, ModelConfig& c) {
    deltanet::read_hf_hybrid(cfg, c);
    deltanet::read_hf_moe(cfg, c, cfg.get_bool("norm_topk_prob", true));
    c.ssm_fused_ba = true;
}

void read_gguf(const GgufFile& g, ModelConfig& c) {
    deltanet::read_gguf_hybrid(g, c);
    deltanet::read_gguf_moe(g, c);
    c.ssm_fused_ba = true;
}

}  // namespace

const Family& qwen3next_family() {
    static const Family f{
        {Arch::Qwen3Next, "qwen3next", "Qwen3NextForCausalLM", "qwen3_next", "qwen3next"},
        {.read_hf = read_hf, .read_gguf = read_gguf, .write_gguf = deltanet::write_gguf_hybrid},
        blocks::concat({deltanet::common_layer(), deltanet::fused_projections(),
                        blocks::qwen_moe_with_shared_expert()})};
    return f;
}

}  // namespace quantlens
