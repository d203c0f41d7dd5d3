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
#include "model/families/deltanet_blocks.h"

namespace quantlens {

namespace {

void set_layer(ModelConfig& c) {
    c.ssm_v_tiled = true;
    c.ssm_fused_ba = false;
}

void read_hf_dense(const HfConfigJson& cfg, ModelConfig& c) {
    deltanet::read_hf_hybrid(cfg, c);
    blocks::read_hf_dense_ffn(cfg, c);
    set_layer(c);
}

void read_hf_moe(const HfConfigJson& cfg, ModelConfig& c) {
    deltanet::read_hf_hybrid(cfg, c);
    deltanet::read_hf_moe(cfg, c, true);
    set_layer(c);
}

void read_gguf_dense(const GgufFile& g, ModelConfig& c) {
    deltanet::read_gguf_hybrid(g, c);
    blocks::read_gguf_dense_ffn(g, c);
    set_layer(c);
}

void read_gguf_moe(const GgufFile& g, ModelConfig& c) {
    deltanet::read_gguf_hybrid(g, c);
    deltanet::read_gguf_moe(g, c);
    set_layer(c);
}

}  // namespace

const Family& qwen35_family() {
    static const Family f{
        .id = Arch::Qwen35,
        .name = "qwen35",
        .hf_architecture = "Qwen3_5ForCausalLM",
        .model_type = "qwen3_5_text",
        .gguf_arch = "qwen35",
        .globals = blocks::llama_globals(),
        .layer_tensors = blocks::concat(
            {deltanet::common_layer(), deltanet::split_projections(), blocks::dense_mlp()}),
        .read_hf = read_hf_dense,
        .claims_gguf = [](const ModelConfig&) { return true; },
        .read_gguf = read_gguf_dense,
        .write_gguf = deltanet::write_gguf_hybrid,
    };
    return f;
}

const Family& qwen35moe_family() {
    static const Family f{
        .id = Arch::Qwen35Moe,
        .name = "qwen35moe",
        .hf_architecture = "Qwen3_5MoeForCausalLM",
        .model_type = "qwen3_5_moe_text",
        .gguf_arch = "qwen35moe",
        .globals = blocks::llama_globals(),
        .layer_tensors = blocks::concat({deltanet::common_layer(), deltanet::split_projections(),
                                         deltanet::moe_with_shared_expert()}),
        .read_hf = read_hf_moe,
        .claims_gguf = [](const ModelConfig&) { return true; },
        .read_gguf = read_gguf_moe,
        .write_gguf = deltanet::write_gguf_hybrid,
    };
    return f;
}

}  // namespace quantlens
