// The non-matmul operations of a transformer layer as llama.cpp's CPU backend (ggml-cpu, x86
// AVX2/FMA build) computes them, for EngineOptions::ggml_numerics: with the matrix products
// already ggml's bit for bit (quant/vec_dot.h), these make a layer's output equal ggml's in
// every bit. Low-bit files (IQ2_XS, IQ2_XXS, TQ2_0) need that: one float rounding of
// difference in a norm flips 8-bit activation roundings downstream, and their perplexity then
// moves by ~0.1 % (issue 28).
//
// Promises (each function is the plain specification of ggml's float order; the ones that
// run often are written so the compiler vectorizes them without changing that order):
//  - rmsnorm_ggml: Σx² of float products summed in double, mean rounded to float,
//    scale = 1/sqrtf(mean + eps) in float, y = (x·scale)·w (ggml_rms_norm, then ggml_mul).
//  - rope_ggml: angle of pair i at position p = p·s^i by repeated float products
//    (s = powf(base, −2/R)), divided by a freq factor and multiplied by freq_scale, then
//    cosf/sinf; "normal" (adjacent pairs) or neox (half-split) rotation with GCC's fused
//    x0·cos − x1·sin as ggml-cpu's build computes it (checked against llama.cpp dumps).
//  - attention_ggml: Q, K and V rounded to F16 (F16 KV cache; Q converted for the F16 K);
//    each score and each output channel is a dot product of F16 values in 8 float lanes
//    (lane = index mod 8, summed in index order, reduced as ((l0+l4)+(l2+l6))+((l1+l5)+(l3+l7)):
//    llamafile's tinyBLAS, which ggml uses for these F16 products in a prompt); softmax as
//    ggml_soft_max_ext: score·scale, masked scores → 0, exp by ggml's AVX2 expf in 8-lane
//    groups from column 0, group sums added in double, probabilities × (float)(1/sum),
//    then rounded to F16 before they meet V.
//  - swiglu_ggml: silu by ggml's AVX2 ggml_v_silu on groups of 8 of each row, x/(1+expf(−x))
//    for a row's tail, times up (ggml_silu, then ggml_mul).
//  - expf_ggml: one lane of ggml_v_expf (the AVX2 exp; max error ~1.5 ulp); expf_ggml8 its
//    AVX2 form, equal lane for lane (tested).
//  - matmul_f32_ggml, softmax_ggml: an F32 matrix product of a prompt as tinyBLAS sums it and
//    ggml_soft_max without mask (MoE routing).
#pragma once

#include <cstdint>
#include <span>

namespace quantlens {

float expf_ggml(float x);
// y[0..7] = expf_ggml(x[0..7]) (AVX2 where built with it; the scalar lanes otherwise).
void expf_ggml8(const float* x, float* y);

// out[N, C] = rmsnorm(in) · weight[C]; out may alias in.
void rmsnorm_ggml(float* out, const float* in, const float* weight, int64_t N, int64_t C,
                  float eps);

// Rotation as llama.cpp's ggml_rope_ext with ext_factor 0 and attention factor 1: x[B, T, H, D]
// in place, positions 0..T-1 per sequence, the first R channels of each head rotated.
// freq_factors: R/2 divisors (llama3's rope_freqs.weight) or empty.
struct RopeGgml {
    float freq_base = 10000.0f;
    float freq_scale = 1.0f;  // 1/factor of linear scaling
    std::span<const float> freq_factors;
    int64_t dims = 0;  // R
    bool neox = false;
};
void rope_ggml(float* x, int64_t B, int64_t T, int64_t H, int64_t D, const RopeGgml& rope);

// Causal GQA attention, q[B, T, H, D], k/v[B, T, KV, D] → out[B, T, H, D] (query head h reads
// kv head h / (H / KV)); key j is seen by query i when j ≤ i and, with window > 0,
// i − j < window. D must be a multiple of 8.
void attention_ggml(float* out, const float* q, const float* k, const float* v, int64_t B,
                    int64_t T, int64_t H, int64_t KV, int64_t D, float scale, int64_t window);

// out[N, OUT] = in[N, IN] · w[OUT, IN]ᵀ for F32 weights as llamafile's tinyBLAS sums a prompt:
// per output one accumulator of eight lanes of fused multiply-adds, reduced as hsum8 (ggml
// takes this path when N ≥ 2, OUT % 4 == 0 and IN % 8 == 0; see matmul_f32_ggml_applies).
bool matmul_f32_ggml_applies(int64_t N, int64_t IN, int64_t OUT);
void matmul_f32_ggml(float* out, const float* in, const float* w, int64_t N, int64_t IN,
                     int64_t OUT);

// x[n] → softmax in place as ggml_soft_max without mask or scale: exp(x − max) by ggml's AVX2
// expf on groups of 8 from the start (libm expf on the tail), the sum in double, × (float)(1/sum).
void softmax_ggml(float* x, int64_t n);

// gate[N, F] ← silu(gate) · up, row by row.
void swiglu_ggml(float* gate, const float* up, int64_t N, int64_t F);

}  // namespace quantlens
