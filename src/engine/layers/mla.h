// Multi-head latent attention (DeepSeek-V2/V3), in llama.cpp's absorbed form: per position one
// latent kv c[L] (kv_a_mqa → RMSNorm) and one rope key kr[R] shared by all heads; head h's
// query is its nope part mapped into the latent space by attn_k_b (q_lat = k_bₕ·q_nope) next
// to its rotated rope part, so
//     score(i, j) = scale · (q_latₕ,ᵢ · c_j + q_ropeₕ,ᵢ · kr_j),   out_latₕ,ᵢ = Σ_j p · c_j,
// and attn_v_b maps out_lat back to v_head_dim per head. transformers decompresses instead
// (k_nope = k_bₕᵀ·c, v = v_bₕ·c per head, then plain attention); both are the same sums in
// another order (tests/engine/test_deepseek_layers.cpp checks it with
// mla_attention_decompressed_ref).
//
// Shapes: B sequences of T positions, H heads, L = kv_lora_rank, R = rope channels, P = nope
// channels, V = v_head_dim. Causal, positions restart at 0 per sequence.
#pragma once

#include <cstdint>

#include "formats/model_config.h"

namespace quantlens {

// transformers' DeepseekV3RMSNorm default, which q_a_layernorm and kv_a_layernorm keep whatever
// rms_norm_eps says.
inline constexpr float kMlaLatentNormEps = 1e-6f;

// The score scale of both engines: yarn's mscale² (yarn_score_scale) / sqrt(nope + rope).
float mla_score_scale(const ModelConfig& config);

// out[B, T, H, L] = causal softmax over j ≤ i of scale · (q_lat[i, h]·ckv[j] + q_rope[i, h]·
// k_rope[j]), times ckv[j]. q_lat[B, T, H, L], q_rope[B, T, H, R], ckv[B, T, L],
// k_rope[B, T, R]. The fast path runs the engine's attention kernel as MQA over [c | kr].
void mla_latent_attention(float* out, const float* q_lat, const float* q_rope, const float* ckv,
                          const float* k_rope, int64_t B, int64_t T, int64_t H, int64_t L,
                          int64_t R, float scale);
void mla_latent_attention_ref(float* out, const float* q_lat, const float* q_rope, const float* ckv,
                              const float* k_rope, int64_t B, int64_t T, int64_t H, int64_t L,
                              int64_t R, float scale);

// transformers' decompressed MLA, for tests: q_nope[B, T, H, P], q_rope[B, T, H, R] (rotated),
// ckv[B, T, L] (normed), k_rope[B, T, R] (rotated), kv_b[H·(P + V), L] (HF's kv_b_proj rows:
// per head P key rows then V value rows) → out[B, T, H, V].
void mla_attention_decompressed_ref(float* out, const float* q_nope, const float* q_rope,
                                    const float* ckv, const float* k_rope, const float* kv_b,
                                    int64_t B, int64_t T, int64_t H, int64_t P, int64_t R,
                                    int64_t L, int64_t V, float scale);

}  // namespace quantlens
