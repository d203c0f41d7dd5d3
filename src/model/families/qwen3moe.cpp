// Qwen3-MoE (Qwen3MoeForCausalLM, GGUF "qwen3moe"; Qwen3-30B-A3B, Qwen3-235B-A22B): Qwen3's
// attention (per-head q/k RMSNorm before neox RoPE, no q/k/v bias) with a routed MoE of
// SwiGLU experts in every layer: softmax over the router logits → top-k, renormalized to sum
// 1 when norm_topk_prob (transformers' default is false; the released models set true). No
// shared expert.
//
// llama.cpp's converter is Qwen2-MoE's (conversion/qwen.py Qwen3MoeModel): the same keys
// (feed_forward_length is config.json's intermediate_size, which no layer uses;
// expert_feed_forward_length is moe_intermediate_size) and the same stacked ffn_*_exps
// tensors. Its qwen3moe graph always renormalizes the top-k weights and makes every layer
// sparse, so a config that does otherwise is refused when a GGUF is written (read as is, it
// evaluates fine from safetensors). decoder_sparse_step / mlp_only_layers making some layer
// dense are refused everywhere: dense layers in an MoE model are not implemented.
#include "model/families/blocks.h"

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace quantlens {

namespace {

void set_layer(ModelConfig& c) {
    c.rope = RopeStyle::Neox;
    c.qk_norm = true;
    c.shared_expert = SharedExpert::None;
}

// transformers: layer l is sparse when l is not in mlp_only_layers and (l + 1) is a multiple
// of decoder_sparse_step.
void refuse_dense_layers(const HfConfigJson& cfg, const ModelConfig& c) {
    const int64_t step = cfg.get_int("decoder_sparse_step", 1);
    QL_CHECK(step == 1,
             "{}: \"decoder_sparse_step\" is {}, which makes some layers dense MLPs; dense "
             "layers in a {} model are not implemented (expected 1: every layer sparse)",
             cfg.path, step, cfg.family);
    const auto only = cfg.j.find("mlp_only_layers");
    if (only == cfg.j.end() || only->is_null()) return;
    QL_CHECK(only->is_array(), "{}: \"mlp_only_layers\" is {}, expected a list of layer indices",
             cfg.path, only->dump());
    for (const auto& v : *only) {
        QL_CHECK(v.is_number_integer(), "{}: \"mlp_only_layers\" holds {}, expected layer indices",
                 cfg.path, v.dump());
        const int64_t l = v.get<int64_t>();
        QL_CHECK(l < 0 || l >= c.n_layers,
                 "{}: \"mlp_only_layers\" makes layer {} a dense MLP; dense layers in a {} model "
                 "are not implemented (expected an empty list)",
                 cfg.path, l, cfg.family);
    }
}

void read_hf(const HfConfigJson& cfg, ModelConfig& c) {
    blocks::read_hf_llama_attention(cfg, c);  // attention_bias refused; no use_qkv_bias here
    blocks::refuse_hf_sliding_window(cfg);
    blocks::read_hf_experts(cfg, c);
    c.ffn = cfg.require_positive("moe_intermediate_size");
    c.moe_dense_ffn = cfg.get_int("intermediate_size", 0);
    c.moe_count_key_local = cfg.j.contains("num_local_experts");  // transformers 5 saves this
    c.moe_renormalize = cfg.get_bool("norm_topk_prob", false);    // transformers' default
    refuse_dense_layers(cfg, c);
    set_layer(c);
}

void read_gguf(const GgufFile& g, ModelConfig& c) {
    QL_CHECK(c.is_moe(),
             "{}: {}.expert_count is missing or 0; llama.cpp's qwen3moe loader needs "
             "experts",
             g.path(), c.gguf_arch);
    // llama.cpp: the expert width, else feed_forward_length / expert_used_count.
    c.moe_dense_ffn = blocks::gguf_int(g, c, "feed_forward_length", 0);
    c.ffn = blocks::gguf_int(g, c, "expert_feed_forward_length", 0);
    if (c.ffn == 0 && c.n_experts_used > 0) c.ffn = c.moe_dense_ffn / c.n_experts_used;
    QL_CHECK(c.ffn > 0, "{}: {}.expert_feed_forward_length is missing and cannot be derived",
             g.path(), c.gguf_arch);
    QL_CHECK(c.qk_norm,
             "{}: blk.0.attn_q_norm.weight is missing; llama.cpp's qwen3moe graph requires the "
             "q/k norms",
             g.path());
    c.moe_renormalize = true;  // llama.cpp's qwen3moe graph always renormalizes the top-k
    set_layer(c);
}

void write_gguf(const ModelConfig& c, GgufKeys& keys) {
    QL_CHECK(c.moe_renormalize,
             "{}: norm_topk_prob is false, but llama.cpp's qwen3moe graph always renormalizes "
             "the top-{} routing weights and has no key for it; a GGUF of this model would be "
             "evaluated wrongly",
             c.hf_architecture, c.n_experts_used);
    // TextModel.set_gguf_parameters: intermediate_size as feed_forward_length, expert_count
    // only from num_local_experts, expert_used_count, key/value length; then
    // Qwen2MoeModel.set_gguf_parameters: expert_count from num_experts, the expert width.
    ModelConfig head = c;
    if (c.moe_dense_ffn > 0) head.ffn = c.moe_dense_ffn;
    head.n_experts = 0;  // the expert keys are placed below
    blocks::write_gguf_head(head, keys);
    if (c.moe_count_key_local) blocks::add_u32(keys, c, "expert_count", c.n_experts);
    blocks::add_u32(keys, c, "expert_used_count", c.n_experts_used);
    blocks::write_gguf_head_size(c, keys);
    if (!c.moe_count_key_local) blocks::add_u32(keys, c, "expert_count", c.n_experts);
    blocks::add_u32(keys, c, "expert_feed_forward_length", c.ffn);
}

}  // namespace

const Family& qwen3moe_family() {
    static const Family f{
        {Arch::Qwen3Moe, "qwen3moe", "Qwen3MoeForCausalLM", "qwen3_moe", "qwen3moe"},
        {.read_hf = read_hf, .read_gguf = read_gguf, .write_gguf = write_gguf},
        blocks::concat({blocks::norms_and_attention(), blocks::qk_norm(), blocks::qwen_moe()})};
    return f;
}

}  // namespace quantlens
