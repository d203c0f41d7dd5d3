// Internal to vec_dot.cpp / vec_dot_avx2.cpp: the float-lane schedule both twins share and
// the AVX2 kernels' entry points. See vec_dot.h for the contract.
#pragma once

#include <cstddef>
#include <cstdint>

#include "quant/blocks.h"

namespace quantlens::vec_dot::detail {

// ggml's hsum_float_8: the two 128-bit halves added, then pairs, then the last two.
inline float hsum8(const float a[8]) {
    const float r0 = a[0] + a[4], r1 = a[1] + a[5], r2 = a[2] + a[6], r3 = a[3] + a[7];
    return (r0 + r2) + (r1 + r3);
}

// ggml's GGML_F32x8_REDUCE of four 8-lane accumulators: x0+x2 and x1+x3, then their sum,
// then the halves (l_i + l_{i+4}), then pairs (r0+r1), (r2+r3), then the two.
inline double reduce_f16_accumulators(const float sum[4][8]) {
    float x[8];
    for (int k = 0; k < 8; ++k) x[k] = (sum[0][k] + sum[2][k]) + (sum[1][k] + sum[3][k]);
    const float r0 = x[0] + x[4], r1 = x[1] + x[5], r2 = x[2] + x[6], r3 = x[3] + x[7];
    return static_cast<double>((r0 + r1) + (r2 + r3));
}

// The 6-bit scale (sc) and min (m) of sub-block j of a Q4_K/Q5_K super-block.
inline void scale_min_k4(int j, const uint8_t* q, int* sc, int* m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// The 16 signed scales of a Q3_K super-block (6 bits each, offset 32).
inline void q3k_scales(const uint8_t* packed, int8_t out[16]) {
    for (int j = 0; j < 16; ++j) {
        const int low = j < 8 ? packed[j] & 0xF : packed[j - 8] >> 4;
        const int high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
        out[j] = static_cast<int8_t>((low | (high << 4)) - 32);
    }
}

// One super-block of an i-quant (IQ2_*, IQ3_*, IQ1_S) as the integers its dot product
// multiplies: the signed grid value of each weight, the odd sub-block scale of each group of
// 16 (2·ls + 1, or IQ1_S's), and IQ1_S's ±1 delta sign per 32 (0 for the others). The
// value of weight i is d · factor · sc[i/16] · (w[i] + delta[i/32] / 8), factor 1/8 (IQ2),
// 1/4 (IQ3_XXS) or 1 (IQ3_S, IQ1_S).
struct IqBlock {
    int8_t w[256];
    int16_t sc[16];
    int8_t delta[8];
};
using IqDecodeFn = void (*)(const void* block, IqBlock& out);
void decode_iq2_xxs(const void* block, IqBlock& out);
void decode_iq2_xs(const void* block, IqBlock& out);
void decode_iq2_s(const void* block, IqBlock& out);
void decode_iq3_xxs(const void* block, IqBlock& out);
void decode_iq3_s(const void* block, IqBlock& out);
void decode_iq1_s(const void* block, IqBlock& out);

// IQ1_M: grid values and scales as IqBlock (delta unused), the ±1 delta of each group of 8
// values, and the super-block F16 scale assembled from the four scale words' top nibbles.
void decode_iq1_m(const void* block, IqBlock& out, int8_t delta8[32], uint16_t* d);
// ggml's AVX2 IQ1_M dot: two lane sets per block, sc · w · q8 and sc · delta · q8, each
// accumulated by fma(y.d · fp16(d), lanes, acc); result hsum8(acc1) + hsum8(acc2) / 8.
float dot_iq1_m_avx2(const void* w, const void* act, int64_t n);
float dot_tq2_0_avx2(const void* w, const void* act, int64_t n);
// TQ1_0's trits (0..2) in element order: 5 per byte of qs (32 bytes × 5, then 16 bytes × 5),
// 4 per byte of qh.
void decode_tq1_0(const void* block, uint8_t trits[256]);
float dot_tq1_0_avx2(const void* w, const void* act, int64_t n);

// ggml's AVX2 i-quant dot: per block, lanes of sc · w · q8 (lane k = positions 4k..4k+3 of
// each 32-value chunk), acc = fma(fp16(d) · y.d, lanes, acc); IQ1_S adds
// delta_acc = fma(d, Σ_32 delta · sc · (sum of the 32 activations), delta_acc). The result
// is factor · hsum8(acc), + delta_acc / 8 for IQ1_S (`delta`).
float dot_iq_avx2(IqDecodeFn decode, size_t block_bytes, float factor, bool delta, const void* w,
                  const void* act, int64_t n);

using DotFn = float (*)(const void* w, const void* act, int64_t n);
// Four activation rows, `stride` bytes apart, against one weight row: out[4], each equal to
// the DotFn result for that row (the weight is unpacked once per block for all four).
using Dot4Fn = void (*)(const void* w, const void* act, size_t stride, int64_t n, float* out);

// AVX2 + FMA kernels (compiled with target attributes; call only when the CPU has both).
float dot_f16_avx2(const void* w, const void* act, int64_t n);
float dot_bf16_avx2(const void* w, const void* act, int64_t n);
float dot_q4_0_avx2(const void* w, const void* act, int64_t n);
float dot_q4_1_avx2(const void* w, const void* act, int64_t n);
float dot_q5_0_avx2(const void* w, const void* act, int64_t n);
float dot_q5_1_avx2(const void* w, const void* act, int64_t n);
float dot_q8_0_avx2(const void* w, const void* act, int64_t n);
float dot_iq4_nl_avx2(const void* w, const void* act, int64_t n);
float dot_mxfp4_avx2(const void* w, const void* act, int64_t n);
float dot_q2_K_avx2(const void* w, const void* act, int64_t n);
float dot_q3_K_avx2(const void* w, const void* act, int64_t n);
float dot_q4_K_avx2(const void* w, const void* act, int64_t n);
float dot_q5_K_avx2(const void* w, const void* act, int64_t n);
float dot_q6_K_avx2(const void* w, const void* act, int64_t n);
float dot_iq4_xs_avx2(const void* w, const void* act, int64_t n);
void dot4_f16_avx2(const void* w, const void* act, size_t stride, int64_t n, float* out);
// llamafile's tinyBLAS order for F16/BF16 weights (vec_dot.h, gemm_dot): one accumulator of
// eight lanes, one FMA per eight values, reduced as hsum8.
float dot_f16_lanes_avx2(const void* w, const void* act, int64_t n);
float dot_bf16_lanes_avx2(const void* w, const void* act, int64_t n);
void dot4_f16_lanes_avx2(const void* w, const void* act, size_t stride, int64_t n, float* out);
void dot4_bf16_lanes_avx2(const void* w, const void* act, size_t stride, int64_t n, float* out);
void dot4_q8_0_avx2(const void* w, const void* act, size_t stride, int64_t n, float* out);
void dot4_q4_K_avx2(const void* w, const void* act, size_t stride, int64_t n, float* out);
void dot4_q6_K_avx2(const void* w, const void* act, size_t stride, int64_t n, float* out);

// AVX-512 (F + BW) kernels for the types of Q4_K_M's bulk, bit-identical to the AVX2 ones
// (call only when the CPU has AVX512F and AVX512BW as well as AVX2, FMA and F16C).
float dot_q4_K_avx512(const void* w, const void* act, int64_t n);
float dot_q6_K_avx512(const void* w, const void* act, int64_t n);
void dot4_q4_K_avx512(const void* w, const void* act, size_t stride, int64_t n, float* out);
void dot4_q6_K_avx512(const void* w, const void* act, size_t stride, int64_t n, float* out);
bool cpu_has_avx512bw();

}  // namespace quantlens::vec_dot::detail
