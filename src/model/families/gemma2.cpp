// Gemma 2 (Gemma2ForCausalLM, GGUF "gemma2"): embeddings × √hidden; each layer RMSNorm
// (1 + w) → GQA attention with neox rope, scores × query_pre_attn_scalar^-½ soft-capped by
// c·tanh(s/c), a sliding window on the layers layer_types marks → post-attention norm →
// residual; pre-MLP norm → GeGLU (tanh) → post-MLP norm → residual; final logits soft-capped.
// llama.cpp's converter stores the norms as 1 + w and drops lm_head (tied embeddings).
#include <cmath>

#include "core/error.h"
#include "model/families/blocks.h"

namespace quantlens {

namespace {

constexpr int64_t kPattern = 2;     // llama.cpp: every other layer slides, from layer 0
constexpr int64_t kLayers27b = 46;  // llama.cpp's 27B, whose scale uses hidden/heads

void read_hf(const HfConfigJson& cfg, ModelConfig& c) {
    blocks::read_hf_gemma(cfg, c, kPattern);
}

void read_gguf(const GgufFile& g, ModelConfig& c) {
    // llama.cpp's defaults when the file has no soft-capping keys.
    blocks::read_gguf_gemma(g, c, kPattern, kLayers27b, 50.0, 30.0);
}

void write_gguf(const ModelConfig& c, GgufKeys& keys) {
    blocks::check_gemma_for_llama_cpp(c, kPattern, kLayers27b);
    QL_CHECK(c.tie_embeddings,
             "{}: tie_word_embeddings is false, but llama.cpp's converter drops lm_head.weight "
             "for gemma2 and computes the logits from the embeddings",
             c.hf_architecture);
    // The converter writes no rope keys for gemma2: llama.cpp uses θ = 10000, unscaled.
    QL_CHECK(c.rope_theta == 10000.0 && c.rope_scaling.kind == RopeScaling::Kind::None,
             "{}: rope_theta {} / rope scaling, but llama.cpp's gemma2 converter writes no rope "
             "keys and its loader uses an unscaled θ of 10000",
             c.hf_architecture, c.rope_theta);
    QL_CHECK(c.attn_softcap > 0 && c.final_softcap > 0,
             "{}: attn_logit_softcapping / final_logit_softcapping is null, which llama.cpp's "
             "gemma2 converter cannot write",
             c.hf_architecture);
    blocks::add_keys(
        keys, c,
        {"context_length", "embedding_length", "block_count", "feed_forward_length",
         "attention.head_count", "attention.head_count_kv", "attention.layer_norm_rms_epsilon"});
    blocks::write_gguf_head_size(c, keys);
    blocks::add_keys(
        keys, c, {"attn_logit_softcapping", "final_logit_softcapping", "attention.sliding_window"});
}

}  // namespace

const Family& gemma2_family() {
    static const Family f{{Arch::Gemma2, "gemma2", "Gemma2ForCausalLM", "gemma2", "gemma2"},
                          blocks::gemma_hooks(read_hf, read_gguf, write_gguf),
                          blocks::gemma_layer()};
    return f;
}

}  // namespace quantlens
