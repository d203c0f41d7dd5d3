// Gemma 4's decoder layer on the CPU engine (the model is described in
// model/families/gemma4.cpp; the config in ModelConfig::gemma4_layers and ple_dim).
//
// Row layout of the engine state h for Gemma 4 (Engine::state_width() floats per token):
//   [0, C)                      the hidden state
//   [C, C + L·P)                the per-layer embedding inputs of every layer (P = ple_dim),
//                               computed once by embed(): (norm(proj(e)·C^-½) + tok_ple·√P)·2^-½
//   [kv_offset[s], +2·KV_s·D_s) K then V of layer s, for each layer s a later KV-shared layer
//                               attends to (K after k-norm and rope, V after v-norm)
// Keeping them in the row makes run_layer(l) a function of its input row alone, so the
// sweep's prefix cache (the input of layer l) resumes exactly.
//
// Kernels (plain functions with `_ref` twins compared in tests/engine/test_gemma4.cpp):
//   proportional_rope_frequencies: transformers' "proportional" rope, one value per pair of a
//     head of D channels, θ^(-2i/D) for the first ⌊p·D/2⌋ pairs and 0 (no rotation) after;
//   ple_inputs_forward / _ref: the per-layer embedding inputs above;
//   gemma4_route: softmax → top-k → renormalized × per-expert scale (scalar code only);
//   gemma4_forward_ref: the whole model in plain double loops (gemma4_ref.cpp).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "engine/engine.h"

namespace quantlens {

std::vector<double> proportional_rope_frequencies(double theta, int64_t D, double partial);
// θ^(-2i/D) for i < D/2: the default rope of the sliding layers.
std::vector<double> default_rope_frequencies(double theta, int64_t D);

// out[N, L·P] from the scaled embeddings emb[N, C], each token's row of
// per_layer_token_embd tok[N, L·P] (unscaled), proj[L·P, C] (ggml [C, L·P]) and norm[P].
void ple_inputs_forward(float* out, const float* emb, const float* tok, const float* proj,
                        const float* norm, int64_t N, int64_t C, int64_t L, int64_t P, float eps);
void ple_inputs_ref(float* out, const float* emb, const float* tok, const float* proj,
                    const float* norm, int64_t N, int64_t C, int64_t L, int64_t P, float eps);

// Where each part of a state row lies (the layout above); both engines use it.
struct Gemma4RowLayout {
    int64_t width = 0;               // floats per row
    int64_t ple_offset = 0;          // the per-layer embedding inputs (C)
    std::vector<int64_t> kv_offset;  // [L] row offset of a stored K (V follows); -1 = none
};
Gemma4RowLayout gemma4_row_layout(const ModelConfig& c);
// The rope frequencies of the sliding layers (default rope, θ_swa, their head size) or of the
// global layers (proportional rope, θ, theirs).
std::vector<double> gemma4_rope_frequencies(const ModelConfig& c, bool sliding);

// Routing of one token: probabilities softmax(logits[E]); the top K experts, weights
// renormalized to sum 1 and multiplied by scale[e]. Returns (expert, weight) pairs.
std::vector<std::pair<int64_t, float>> gemma4_route(const float* logits, const float* scale,
                                                    int64_t E, int64_t K);

// The scalar reference twin of the whole forward pass (gemma4_ref.cpp): double loops over the
// model's weights for one sequence → logits [T, V]. Tests compare Engine::forward with it.
std::vector<double> gemma4_forward_ref(const Model& model, std::span<const int32_t> tokens);

struct Engine::Gemma4State {
    struct Names {
        std::string attn_norm, q, k, v, o, q_norm, k_norm, post_attn_norm;
        std::string ffn_norm, gate, up, down, post_ffw_norm;
        std::string router, router_scale, gate_up_exps, down_exps, expert_scale;
        std::string pre_norm_2, post_norm_1, post_norm_2;
        std::string inp_gate, proj, post_norm, out_scale;
    };
    std::vector<Names> names;  // [L]
    Gemma4RowLayout rows;
    std::vector<float> ones;  // weightless RMSNorm (v-norm, router input)
    std::vector<double> freqs_swa, freqs_global;
};

}  // namespace quantlens
