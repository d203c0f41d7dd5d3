// Phi-3 / Phi-3.5 / Phi-4 / Phi-4-mini (Phi3ForCausalLM, GGUF "phi3"): Llama's layer with
// fused projections — self_attn.qkv_proj (q | k | v rows) and mlp.gate_up_proj (gate | up) —
// which llama.cpp's converter keeps fused as attn_qkv and ffn_up; neox rope over the first
// partial_rotary_factor of each head; longrope (short/long factors, attention factor) carried
// in the GGUF as rope_factors_short/long.weight and rope.scaling.attn_factor; a
// sliding_window on every layer when config.json sets it (transformers; llama.cpp ignores the
// window of a phi3 GGUF, and so does reading one here).
#include <cmath>

#include "core/error.h"
#include "model/families/blocks.h"

namespace quantlens {

namespace {

void set_layer(ModelConfig& c) {
    c.rope = RopeStyle::Neox;
    c.fused_qkv = true;
    c.fused_gate_up = true;
}

void read_hf(const HfConfigJson& cfg, ModelConfig& c) {
    blocks::read_hf_llama_attention(cfg, c);
    blocks::read_hf_dense_ffn(cfg, c);
    set_layer(c);
    c.sliding_window = cfg.get_int("sliding_window", 0);
    QL_CHECK(c.sliding_window >= 0, "{}: \"sliding_window\" is {}, expected ≥ 0", cfg.path,
             c.sliding_window);
    // Kept for the GGUF's rope.scaling.original_context_length even without longrope.
    if (c.rope_scaling.original_max_positions == 0)
        c.rope_scaling.original_max_positions = cfg.get_int("original_max_position_embeddings", 0);
}

void read_gguf(const GgufFile& g, ModelConfig& c) {
    blocks::read_gguf_dense_ffn(g, c);
    set_layer(c);
    // llama.cpp's phi3 loader reads attention.sliding_window but disables the window ("Phi
    // SWA is currently disabled"): the file is evaluated with full attention, as there.
    c.sliding_window = 0;
}

// The converter's attention factor: it ignores any attention_factor in the config.
double converter_attn_factor(const ModelConfig& c) {
    const double orig = static_cast<double>(c.rope_scaling.original_max_positions);
    const double scale = static_cast<double>(c.max_positions) / orig;
    return scale > 1.0 ? std::sqrt(1.0 + std::log(scale) / std::log(orig)) : 1.0;
}

void write_gguf_early(const ModelConfig& c, GgufKeys& keys) {
    if (c.rope_scaling.kind != RopeScaling::Kind::LongRope) return;
    const double factor = converter_attn_factor(c);
    QL_CHECK(std::fabs(factor - c.rope_scaling.attention_factor) <= 1e-6 * factor,
             "{}: rope attention_factor is {}, but llama.cpp's phi3 converter writes {} "
             "(from max_position_embeddings / original_max_position_embeddings); a GGUF of this "
             "model would be evaluated wrongly",
             c.hf_architecture, c.rope_scaling.attention_factor, factor);
    blocks::add_f32(keys, c, "rope.scaling.attn_factor", factor);
}

void write_gguf(const ModelConfig& c, GgufKeys& keys) {
    QL_CHECK(c.rope_scaling.kind == RopeScaling::Kind::None ||
                 c.rope_scaling.kind == RopeScaling::Kind::LongRope,
             "{}: llama.cpp's phi3 converter writes longrope scaling only", c.hf_architecture);
    QL_CHECK(c.rope_scaling.original_max_positions > 0,
             "{}: no original_max_position_embeddings, which llama.cpp's phi3 converter needs",
             c.hf_architecture);
    blocks::add_keys(keys, c, {"context_length"});
    blocks::add_u32(keys, c, "rope.scaling.original_context_length",
                    c.rope_scaling.original_max_positions);
    blocks::add_keys(
        keys, c,
        {"embedding_length", "feed_forward_length", "block_count", "attention.head_count",
         "attention.head_count_kv", "attention.layer_norm_rms_epsilon", "rope.dimension_count",
         "rope.freq_base", "attention.sliding_window"});
}

}  // namespace

const Family& phi3_family() {
    static const Family f{{Arch::Phi3, "phi3", "Phi3ForCausalLM", "phi3", "phi3"},
                          {.read_hf = read_hf,
                           .read_gguf = read_gguf,
                           .write_gguf = write_gguf,
                           .write_gguf_early = write_gguf_early},
                          blocks::fused_attention_and_mlp()};
    return f;
}

}  // namespace quantlens
