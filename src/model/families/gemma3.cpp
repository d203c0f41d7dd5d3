// Gemma 3 text (Gemma3ForCausalLM, GGUF "gemma3"): Gemma 2's layer (√hidden embeddings,
// (1 + w) norms, post-norms, GeGLU, query_pre_attn_scalar, sliding layers) with a per-head
// RMSNorm of q and k before rope, no soft-capping unless the config sets it, and two ropes:
// the global layers' θ and scaling (rope_parameters.full_attention, e.g. linear × 8) and the
// sliding layers' own unscaled θ (rope_parameters.sliding_attention, v4 rope_local_base_freq).
#include "core/error.h"
#include "model/families/blocks.h"

namespace quantlens {

namespace {

constexpr int64_t kPattern = 6;          // llama.cpp: five sliding layers, then a global one
constexpr int64_t kLayers27b = 62;       // llama.cpp's 27B, whose scale uses hidden/heads
constexpr double kLocalTheta = 10000.0;  // transformers' rope_local_base_freq default

void read_hf(const HfConfigJson& cfg, ModelConfig& c) {
    blocks::read_hf_gemma(cfg, c, kPattern);
    c.qk_norm = true;
    if (c.rope_theta_swa <= 0) c.rope_theta_swa = kLocalTheta;
}

void read_gguf(const GgufFile& g, ModelConfig& c) {
    // llama.cpp's gemma3 graph applies no attention soft-capping; the final one when the key
    // is there.
    blocks::read_gguf_gemma(g, c, kPattern, kLayers27b, 0.0, 0.0);
    c.attn_softcap = 0.0;
    c.qk_norm = true;
    if (c.sliding_window <= 0) c.layer_sliding.clear();
    // llama.cpp's gemma3 loader sets the sliding layers' θ to 10000 after reading the keys.
    c.rope_theta_swa = kLocalTheta;
}

void write_gguf(const ModelConfig& c, GgufKeys& keys) {
    blocks::check_gemma_for_llama_cpp(c, kPattern, kLayers27b);
    QL_CHECK(c.rope_theta_swa == kLocalTheta,
             "{}: the sliding layers' rope_theta is {}, but llama.cpp's gemma3 loader fixes it at "
             "{}; a GGUF of this model would be evaluated wrongly",
             c.hf_architecture, c.rope_theta_swa, kLocalTheta);
    QL_CHECK(c.attn_softcap == 0,
             "{}: attn_logit_softcapping is {}, which llama.cpp's gemma3 converter refuses and "
             "its graph does not apply",
             c.hf_architecture, c.attn_softcap);
    blocks::write_gguf_sizes(c, keys);
    if (c.rope_scaling.kind == RopeScaling::Kind::Linear) {
        keys.emplace_back(c.gguf_arch + ".rope.scaling.type", GgufValue::string("linear"));
        blocks::add_f32(keys, c, "rope.scaling.factor", c.rope_scaling.factor);
    } else {
        QL_CHECK(c.rope_scaling.kind == RopeScaling::Kind::None,
                 "{}: llama.cpp's gemma3 reads linear rope scaling only", c.hf_architecture);
    }
    blocks::add_f32(keys, c, "rope.freq_base", c.rope_theta);
    if (c.rope_theta_swa > 0) blocks::add_f32(keys, c, "rope.freq_base_swa", c.rope_theta_swa);
    blocks::add_f32(keys, c, "attention.layer_norm_rms_epsilon", c.rms_eps);
    blocks::write_gguf_head_size(c, keys);
    if (c.final_softcap > 0) blocks::add_f32(keys, c, "final_logit_softcapping", c.final_softcap);
    if (c.sliding_window > 0)
        blocks::add_u32(keys, c, "attention.sliding_window", c.sliding_window);
}

}  // namespace

const Family& gemma3_family() {
    static const Family f{{Arch::Gemma3, "gemma3", "Gemma3ForCausalLM", "gemma3_text", "gemma3"},
                          blocks::gemma_hooks(read_hf, read_gguf, write_gguf),
                          blocks::concat({blocks::gemma_layer(), blocks::qk_norm()})};
    return f;
}

}  // namespace quantlens
