// Launchers of ql_cuda's own kernels (cuda_kernels.cu), with plain C++ signatures so the
// engine's host code is ordinary C++. Data pointers are device pointers; `Dtype` names the
// 16-bit storage type of pointers declared void*. All launches go to the default stream.
//
// Numerics mirror engine/kernels.cpp: RMSNorm with a double sum of squares, RoPE from
// host-computed tables, causal softmax in float with expf, SiLU g / (1 + exp(-g)), routing
// softmax in double with stable top-k, log-softmax normalizer summed in double; matmul inputs
// rounded as ggml rounds them (round_activations) bit for bit.
#pragma once

#include <cstdint>

namespace quantlens::cuda {

// The storage type of weights and activations: 16-bit, or F32 (llama.cpp's numerics, where
// fake-quantized values must be held exactly).
enum class Dtype { BF16, F16, F32 };

// Weight-error reduction of ŵ against w (n 16-bit values each): kWeightErrorBlocks blocks each
// write kWeightErrorSums doubles {Σe², Σ|e|, max|e|, Σw², Σŵ², Σwŵ, Σa·e², Σa·w²} (e = ŵ − w;
// a = importance of the value's column, importance[i % n_per_row], the last two 0 without
// importance) to partial[block * kWeightErrorSums ...]; the caller sums the blocks in order.
constexpr int64_t kWeightErrorBlocks = 256;
constexpr int64_t kWeightErrorSums = 8;
void launch_weight_error_partials(const void* w, const void* w_hat, Dtype dt, int64_t n,
                                  double* partial, const float* importance = nullptr,
                                  int64_t n_per_row = 0);

// h[N, C] f32 ← table[tokens[n], :] (16-bit) × scale (Gemma's √hidden, in float; 1: none).
void launch_embed(float* h, const void* table, Dtype dt, const int32_t* tokens, int64_t N,
                  int64_t C, float scale = 1.0f);

// out[r, :] (16-bit) = rmsnorm(in[row(r), :]) * w for r < R, where
// row(r) = (r / S) * T + t0 + r % S (S = T, t0 = 0 gathers nothing).
void launch_rmsnorm(void* out, Dtype dt, const float* in, const float* w, int64_t R, int64_t C,
                    float eps, int64_t S, int64_t T, int64_t t0);

// qkv[N, (H + 2 KV) D] f32 (GEMM output) → q[N, H, D], k[N, KV, D], v[N, KV, D] (16-bit):
// + bias (nullable, fused [H+2KV, D]), per-head RMSNorm of q and k (q_norm/k_norm nullable),
// RoPE with cos/sin[T, P] at position n % T over the first 2P ≤ D channels of each head
// (partial rotary leaves the rest as they are; P = D/2 rotates all).
void launch_qkv_post(const float* qkv, const float* bias, const float* q_norm, const float* k_norm,
                     float eps, const float* cos_t, const float* sin_t, bool neox, void* q, void* k,
                     void* v, Dtype dt, int64_t N, int64_t T, int64_t H, int64_t KV, int64_t D,
                     int64_t P);

// Multi-head latent attention (DeepSeek-V3; engine/layers/mla.h), after the q_b and kv_a
// GEMMs: q[N, H, P + R] f32 → q_nope[H, N, P] (16-bit, each head's block one GEMM input) and
// the rotated rope part of each head into q_cat[N, H, L + R] f32 at channel L (the GEMM with
// attn_k_b fills channels 0..L-1); kv[N, L + R] f32 → k_cat[N, L + R] f32: RMSNorm(kv[:, :L])
// · kv_norm (eps) next to the rotated shared rope key. RoPE as launch_qkv_post over R channels
// (cos/sin[T, R/2]).
void launch_mla_post(const float* q, const float* kv, const float* kv_norm, float eps,
                     const float* cos_t, const float* sin_t, bool neox, void* q_nope, float* q_cat,
                     float* k_cat, Dtype dt, int64_t N, int64_t T, int64_t H, int64_t P, int64_t R,
                     int64_t L);
// dst[h, n, :] (16-bit) = src[n, h, :] (f32) for N × H rows of W: heads as GEMM inputs.
void launch_heads_to_16(void* dst, Dtype dt, const float* src, int64_t N, int64_t H, int64_t W);

// Rows of T scores (rows = batch·T, query i = row % T): causal softmax over keys lo..i into
// p, lo = max(0, i − window + 1) with a sliding window (window 0: lo = 0); zeros below lo and
// beyond i up to the end of i's block of key_block keys, nothing written after it (key_block
// 0: the whole row). Scores outside lo..i are never read. The score scale is already applied
// by the GEMM; softcap > 0 maps each score s to softcap·tanh(s / softcap) first (Gemma 2).
// sinks (gpt-oss; nullable): the logit sinks[head] of each head (rows of one head are T
// consecutive rows, heads cycling every `heads` of them) joins the maximum and the
// denominator, so the row's probabilities sum to less than 1.
void launch_causal_softmax(const float* scores, void* p, Dtype dt, int64_t rows, int64_t T,
                           int64_t key_block = 0, int64_t window = 0, float softcap = 0.0f,
                           const float* sinks = nullptr, int64_t heads = 1);

// The gated MLP's activation: out[n, f] = act(gu[n, f]) * gu[n, F + f] (all 16-bit), act SiLU
// g / (1 + exp(−g)) or tanh-approximated GELU (GeGLU), in engine/kernels.cpp's float order, or
// gpt-oss's (u + 1)·g·σ(alpha·g) with g ≤ limit and |u| ≤ limit (engine/layers/clamped_swiglu).
// Biases (nullable, F values each) are added to the gate and up halves in float first.
enum class GateAct { SiLU, GeluTanh, ClampedSwiGLU };
struct GateExtras {
    const float* gate_bias = nullptr;
    const float* up_bias = nullptr;
    float limit = 0.0f, alpha = 0.0f;  // ClampedSwiGLU only
};
void launch_swiglu(void* out, const void* gu, Dtype dt, int64_t N, int64_t F,
                   GateAct act = GateAct::SiLU, const GateExtras& extras = {});

// Post-norm residual (Gemma): h[n, :] += rmsnorm(y[n, :]) * w (f32; the norm as launch_rmsnorm,
// rounded to float before the add, as the CPU engine's rmsnorm then residual_forward).
void launch_rmsnorm_add(float* h, const float* y, const float* w, int64_t N, int64_t C, float eps);

// x[i] ← cap · tanh(x[i] / cap) for n f32 values (final logit soft-capping).
void launch_softcap(float* x, int64_t n, float cap);

// Softmax routing: logits[N, E] f32 → top-K expert ids and their weights [N, K], renormalized
// to sum 1 (Mixtral, Qwen with norm_topk_prob) or the softmax probabilities as they are
// (Qwen3-MoE with norm_topk_prob false).
void launch_router_topk(const float* logits, int32_t* ids, float* weights, int64_t N, int64_t E,
                        int64_t K, bool renormalize = true);
// dst[i, :] = src[rows[i], :] (16-bit, C columns).
void launch_gather_rows(void* dst, const void* src, Dtype dt, const int32_t* rows, int64_t M,
                        int64_t C);
// h[rows[i], :] += w[i] * (y[i, :] + bias) (f32; bias nullable, C values).
void launch_scatter_add(float* h, const float* y, const int32_t* rows, const float* w, int64_t M,
                        int64_t C, const float* bias = nullptr);
// x[n, c] += bias[c] for x[N, C] f32 (the CPU engine adds a linear's bias after the product).
void launch_add_bias(float* x, const float* bias, int64_t N, int64_t C);

// Reference pass: for B·S scored rows, row (b, s) reads logits[(b R + s) V ..] and writes
// ref_logp[(row0 + b S + s) V ..] (z − lse, in float), ref_lse (that lse, in double) and
// ref_top1 at row0 + b S + s.
void launch_reference_rows(const float* logits, int64_t B, int64_t S, int64_t R, int64_t V,
                           float* ref_logp, double* ref_lse, int32_t* ref_top1, int64_t row0);

// Per scored row statistics against the reference (see sweep_backend.h's PerturbedStats).
struct RowStats {
    double kld, nll, ref_nll, dp2;
    int32_t same, pad;
};
// next[row0 + b S + s] is the token predicted at (b, s). Logits equal to the reference's give
// a KLD of exactly 0 (ref_logp, ref_lse and ref_top1 from launch_reference_rows).
void launch_score_rows(const float* logits, int64_t B, int64_t S, int64_t R, int64_t V,
                       const float* ref_logp, const double* ref_lse, const int32_t* ref_top1,
                       const int32_t* next, int64_t row0, RowStats* out);

// Next-token NLL over a vocabulary seen a tile at a time (eval without a base scores on the
// GPU: no logits leave it). z[R, vt] holds logits columns v0..v0+vt−1 of R rows; each row's
// running maximum and Σ exp(z − max) (double, rescaled when the maximum grows), and its target
// logit when next[r] falls in the tile, are updated (v0 == 0 starts them).
void launch_nll_tile(const float* z, int64_t R, int64_t vt, int64_t v0, const int32_t* next,
                     float* run_max, double* run_sum, float* target);
// out[r] = max + log(Σ) − z[next]: kld.h's token_nll, in float.
void launch_nll_finish(const float* run_max, const double* run_sum, const float* target, int64_t R,
                       float* out);

// *acc += Σ (a[i] − b[i])² in a fixed order (deterministic); partials holds 1024 doubles.
// With cols < ld, a and b are rows of ld floats of which the first cols count (n = rows·cols).
void launch_sq_diff_accumulate(const float* a, const float* b, int64_t n, double* partials,
                               double* acc, int64_t cols = 0, int64_t ld = 0);

// llama.cpp's CPU rounding of a matmul input for the weight's type (engine/kernels.h's
// ActRounding, same order): x[N, C] f32 in place, bit-identical to round_activations.
enum class ActRound { None, F16, BF16, Q8_0, Q8_K };
void launch_round_activations(float* x, int64_t N, int64_t C, ActRound kind);

// Conversions and fills.
void launch_f32_to_16(void* dst, Dtype dt, const float* src, int64_t n);
void launch_16_to_f32(float* dst, const void* src, Dtype dt, int64_t n);
void launch_fill_f32(float* dst, float value, int64_t n);
// Uniform pseudo-random values in ±scale (a counter hash of seed and index).
void launch_random_16(void* dst, Dtype dt, int64_t n, uint64_t seed, float scale);

}  // namespace quantlens::cuda
