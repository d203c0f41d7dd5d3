// CPU kernels of the forward pass, llm.c style: plain functions, outputs first, shapes
// named once. N = rows (batch × time), T = time, C = channels, H = query heads,
// KV = key/value heads, D = head dim. All buffers are row-major float32, contiguous.
//
// Fast paths (matmul_forward, attention_forward) use OpenBLAS sgemm, single-threaded per
// call, with our own thread pool splitting the work; each has a naive `_ref` twin that is
// the specification and is compared against it in tests/engine/test_kernels.cpp.
// Call engine_init_blas() once before using them (sets OpenBLAS to one thread so it does
// not oversubscribe the cores our pool already uses).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/ggml_type.h"
#include "core/parallel.h"

namespace quantlens {

void engine_init_blas();

// out[N, C] = in[N, C] · row_scale(in row) · weight[C], rows spread over the threads (out may
// alias in): the RMSNorm that rmsnorm_forward and ggml's emulation (rmsnorm_ggml) share; they
// differ only in how row_scale forms a row's 1/rms.
template <typename RowScale>
void rmsnorm_rows(float* out, const float* in, const float* weight, int64_t N, int64_t C,
                  const RowScale& row_scale) {
    parallel_for(
        static_cast<size_t>(N),
        [&](size_t begin, size_t end) {
            for (size_t r = begin; r < end; ++r) {
                const float* x = in + r * C;
                const float scale = row_scale(x);
                float* y = out + r * C;
                for (int64_t c = 0; c < C; ++c) y[c] = x[c] * scale * weight[c];
            }
        },
        16);
}

// out[N, C] = in[N, C] / rms(in row) * weight[C]
void rmsnorm_forward(float* out, const float* in, const float* weight, int64_t N, int64_t C,
                     float eps);

// out[N, OUT] = in[N, IN] · weight[OUT, IN]ᵀ (+ bias[OUT] when not null).
// weight is ggml's ne = [IN, OUT], i.e. row-major [OUT][IN].
void matmul_forward(float* out, const float* in, const float* weight, const float* bias, int64_t N,
                    int64_t IN, int64_t OUT);
void matmul_forward_ref(float* out, const float* in, const float* weight, const float* bias,
                        int64_t N, int64_t IN, int64_t OUT);

// Rotary embedding in place on x[B, T, H, D] for positions 0..T-1 of each sequence, over
// the first R = 2·freqs.size() ≤ D channels of each head (partial rotary leaves the rest).
// neox: rotate (x[i], x[i + R/2]) (half-split, HF rotate_half); otherwise rotate adjacent
// pairs (x[2i], x[2i+1]) — llama.cpp's "normal" mode on converter-permuted q/k rows.
// freqs[R/2] are the angular frequencies (rope_frequencies(config): θ^(-2i/R) with the
// model's scaling); angle = position × freq. bf16_freqs rounds each frequency to BF16 first:
// what transformers computes for a model loaded in bfloat16 and cast to float32 (its
// inv_freq buffer was cast with it). cos and sin are multiplied by `mscale` (longrope's
// attention factor).
void rope_forward(float* x, int64_t B, int64_t T, int64_t H, int64_t D,
                  std::span<const double> freqs, bool neox, bool bf16_freqs = false,
                  double mscale = 1.0);
// The cos/sin tables [T, R/2] rope_forward uses; the GPU engine uploads the same tables.
void rope_tables(std::span<const double> freqs, int64_t T, bool bf16_freqs,
                 std::vector<float>& cos_table, std::vector<float>& sin_table, double mscale = 1.0);

// How attention scores are formed and masked beyond plain causal softmax(q·k/sqrt(D)).
struct AttentionParams {
    float scale = 0.0f;    // score = scale · q·k; 0 = 1/sqrt(D)
    float softcap = 0.0f;  // score → softcap · tanh(score / softcap) (Gemma 2); 0 = none
    int64_t window = 0;    // query i sees keys j with i − j < window (sliding); 0 = all j ≤ i
    // Rounds the softmax probabilities to F16 before they multiply V, as ggml's CPU
    // attention does with an F16 KV cache.
    bool f16_probs = false;
};

// Causal grouped-query attention. q[B, T, H, D], k/v[B, T, KV, D] → out[B, T, H, D];
// query head h reads kv head h / (H / KV).
void attention_forward(float* out, const float* q, const float* k, const float* v, int64_t B,
                       int64_t T, int64_t H, int64_t KV, int64_t D,
                       const AttentionParams& params = {});
void attention_forward_ref(float* out, const float* q, const float* k, const float* v, int64_t B,
                           int64_t T, int64_t H, int64_t KV, int64_t D,
                           const AttentionParams& params = {});

// How ggml's CPU matmul converts activations before the dot product with a weight of a
// given type (its "vec_dot_type"): none for F32, F16/BF16 rounding, or 8-bit quantization
// in blocks of 32 (Q8_0; Q8_1 holds the same values) or 256 (Q8_K).
enum class ActRounding { None, F16, BF16, Q8_0, Q8_K };
ActRounding ggml_act_rounding(GgmlType weight_type);
// Rounds x[N, C] in place as ggml would (C must be a multiple of the block for Q8_*).
void round_activations(float* x, int64_t N, int64_t C, ActRounding kind);

// out[n] = silu(gate[n]) * up[n]; out may alias gate.
void swiglu_forward(float* out, const float* gate, const float* up, int64_t n);
// out[n] = gelu_tanh(gate[n]) * up[n], gelu_tanh(x) = ½x(1 + tanh(√(2/π)(x + 0.044715x³)))
// (transformers' gelu_pytorch_tanh); out may alias gate.
void geglu_tanh_forward(float* out, const float* gate, const float* up, int64_t n);
// x[n] → c·tanh(x[n]/c) (logit soft-capping).
void softcap_forward(float* x, int64_t n, float c);

// x[n] += y[n]
void residual_forward(float* x, const float* y, int64_t n);

}  // namespace quantlens
