// Quantized dot products: activation quantization, the scalar reference twins, run-time
// dispatch and the matrix product. See vec_dot.h for the contract.
//
// Each reference twin computes, per block, the same eight int32 lane sums as ggml's AVX2
// kernel (lane k = positions 4k..4k+3 of each 32-value chunk, times the sub-block scale) and
// then the same float operations in the same order, with std::fma where the AVX2 kernel
// uses a fused multiply-add.
#include "quant/vec_dot.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "core/parallel.h"
#include "quant/blocks.h"
#include "quant/quant.h"
#include "quant/scale_search.h"
#include "quant/tables_generated.h"
#include "quant/vec_dot_impl.h"

namespace quantlens::vec_dot {
namespace {

using namespace blocks;
using detail::hsum8;

float fp16(half h) {
    return f16_to_f32(h);
}

// ---- activation quantization ------------------------------------------------------------

// ggml's AVX2 quantize_row_q8_0/q8_1: d = amax/127, q = round-half-even(x · 127/amax).
template <bool with_sum>
void quantize_q8_0_or_1(const float* x, void* dst, int64_t n) {
    for (int64_t b = 0; b < n / QK8_0; ++b) {
        const float* xb = x + b * QK8_0;
        float amax = 0.0f;
        for (int i = 0; i < QK8_0; ++i) amax = std::max(amax, std::fabs(xb[i]));
        const float d = amax / 127.0f;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        int8_t qs[QK8_0];
        int sum = 0;
        for (int i = 0; i < QK8_0; ++i) {
            qs[i] = static_cast<int8_t>(std::nearbyint(xb[i] * id));
            sum += qs[i];
        }
        if constexpr (with_sum) {
            auto* y = static_cast<block_q8_1*>(dst) + b;
            y->d = f32_to_f16(d);
            y->s = f32_to_f16(d * static_cast<float>(sum));
            std::memcpy(y->qs, qs, QK8_0);
        } else {
            auto* y = static_cast<block_q8_0*>(dst) + b;
            y->d = f32_to_f16(d);
            std::memcpy(y->qs, qs, QK8_0);
        }
    }
}

// ggml's quantize_row_q8_K_ref: the largest-magnitude value (with its sign) maps to −127.
void quantize_q8_K(const float* x, void* dst, int64_t n) {
    auto* y = static_cast<block_q8_K*>(dst);
    for (int64_t b = 0; b < n / QK_K; ++b, ++y) {
        const float* xb = x + b * QK_K;
        const auto extreme = kernels::detail::signed_extreme(xb, QK_K);
        const float mx = extreme.value;
        if (extreme.magnitude == 0.0f) {
            std::memset(y, 0, sizeof(*y));
            continue;
        }
        const float iscale = -127.0f / mx;
        for (int i = 0; i < QK_K; ++i)
            y->qs[i] = static_cast<int8_t>(
                std::min(127, static_cast<int>(std::nearbyint(iscale * xb[i]))));
        for (int j = 0; j < QK_K / 16; ++j) {
            int sum = 0;
            for (int i = 0; i < 16; ++i) sum += y->qs[j * 16 + i];
            y->bsums[j] = static_cast<int16_t>(sum);
        }
        y->d = 1.0f / iscale;
    }
}

// ---- reference twins ---------------------------------------------------------------------

// Legacy types: per block one scale d and lane sums of (weight value × activation).
// value(block, i) gives weight i of the block as a signed or unsigned integer.
template <typename Block, typename Value>
void legacy_lanes(const Block& x, const block_q8_0& y, int32_t lanes[8], Value value) {
    for (int k = 0; k < 8; ++k) lanes[k] = 0;
    for (int i = 0; i < 32; ++i) lanes[i / 4] += value(x, i) * y.qs[i];
}

int q4_0_value(const block_q4_0& x, int i) {
    return (i < 16 ? x.qs[i] & 0xF : x.qs[i - 16] >> 4) - 8;
}
int q4_1_value(const block_q4_1& x, int i) {
    return i < 16 ? x.qs[i] & 0xF : x.qs[i - 16] >> 4;
}
uint32_t qh_bits(const uint8_t qh[4]) {
    uint32_t u;
    std::memcpy(&u, qh, 4);
    return u;
}
int q5_0_value(const block_q5_0& x, int i) {
    const int low = i < 16 ? x.qs[i] & 0xF : x.qs[i - 16] >> 4;
    return (low | static_cast<int>(((qh_bits(x.qh) >> i) & 1) << 4)) - 16;
}
int q5_1_value(const block_q5_1& x, int i) {
    const int low = i < 16 ? x.qs[i] & 0xF : x.qs[i - 16] >> 4;
    return low | static_cast<int>(((qh_bits(x.qh) >> i) & 1) << 4);
}
int q8_0_value(const block_q8_0& x, int i) {
    return x.qs[i];
}
int iq4_nl_value(const block_iq4_nl& x, int i) {
    return tables::kvalues_iq4nl[i < 16 ? x.qs[i] & 0xF : x.qs[i - 16] >> 4];
}

// Q4_0, Q5_0, Q8_0: acc = fma(d_x·d_y, lanes, acc) per block.
template <typename Block, typename Value>
float dot_legacy_ref(const void* w, const void* act, int64_t n, Value value) {
    const auto* x = static_cast<const Block*>(w);
    const auto* y = static_cast<const block_q8_0*>(act);
    float acc[8] = {};
    int32_t lanes[8];
    for (int64_t b = 0; b < n / 32; ++b) {
        const float d = fp16(x[b].d) * fp16(y[b].d);
        legacy_lanes(x[b], y[b], lanes, value);
        for (int k = 0; k < 8; ++k) acc[k] = std::fma(d, static_cast<float>(lanes[k]), acc[k]);
    }
    return hsum8(acc);
}

// Q4_1, Q5_1 against Q8_1: the min term m·s is summed separately, in block order.
template <typename Block, typename Value>
float dot_legacy1_ref(const void* w, const void* act, int64_t n, Value value) {
    const auto* x = static_cast<const Block*>(w);
    const auto* y = static_cast<const block_q8_1*>(act);
    float acc[8] = {};
    float summs = 0.0f;
    for (int64_t b = 0; b < n / 32; ++b) {
        summs += fp16(x[b].m) * fp16(y[b].s);
        const float d = fp16(x[b].d) * fp16(y[b].d);
        int32_t lanes[8] = {};
        for (int i = 0; i < 32; ++i) lanes[i / 4] += value(x[b], i) * y[b].qs[i];
        for (int k = 0; k < 8; ++k) acc[k] = std::fma(d, static_cast<float>(lanes[k]), acc[k]);
    }
    return hsum8(acc) + summs;
}

// ggml's E8M0 scale of MXFP4, halved (its codes are stored doubled): 2^(e−128).
float e8m0_half(uint8_t e) {
    const uint32_t bits = e < 2 ? (0x00200000u << e) : static_cast<uint32_t>(e - 1) << 23;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}
float block_scale(const block_iq4_nl& x) {
    return fp16(x.d);
}
float block_scale(const block_mxfp4& x) {
    return e8m0_half(x.e);
}

// IQ4_NL and MXFP4 (4-bit codes through a 16-entry table, against Q8_0): even blocks in one
// accumulator, odd in another; an odd last block is added separately, as ggml's AVX2 loop
// does two blocks per step.
template <typename Block>
float dot_table4_ref(const void* w, const void* act, int64_t n, const int8_t table[16]) {
    const auto* x = static_cast<const Block*>(w);
    const auto* y = static_cast<const block_q8_0*>(act);
    const auto value = [&](const Block& blk, int i) {
        return table[i < 16 ? blk.qs[i] & 0xF : blk.qs[i - 16] >> 4];
    };
    const int64_t nb = n / 32;
    float acc1[8] = {}, acc2[8] = {};
    int32_t lanes[8];
    int64_t b = 0;
    for (; b + 1 < nb; b += 2) {
        for (int64_t h = 0; h < 2; ++h) {
            float* acc = h == 0 ? acc1 : acc2;
            const float d = fp16(y[b + h].d) * block_scale(x[b + h]);
            legacy_lanes(x[b + h], y[b + h], lanes, value);
            for (int k = 0; k < 8; ++k) acc[k] = std::fma(d, static_cast<float>(lanes[k]), acc[k]);
        }
    }
    float sum[8];
    for (int k = 0; k < 8; ++k) sum[k] = acc1[k] + acc2[k];
    float sumf = hsum8(sum);
    for (; b < nb; ++b) {
        const float d = fp16(y[b].d) * block_scale(x[b]);
        int sumi = 0;
        for (int i = 0; i < 32; ++i) sumi += value(x[b], i) * y[b].qs[i];
        sumf += d * static_cast<float>(sumi);
    }
    return sumf;
}

float dot_iq4_nl_ref(const void* w, const void* act, int64_t n) {
    return dot_table4_ref<block_iq4_nl>(w, act, n, tables::kvalues_iq4nl);
}
float dot_mxfp4_ref(const void* w, const void* act, int64_t n) {
    return dot_table4_ref<block_mxfp4>(w, act, n, tables::kvalues_fp4);
}

// The K-quant twins below mirror ggml's AVX2 kernels one by one on purpose: their common
// preamble and lane accumulation are ggml's, kept apart so each reads against its kernel.
float dot_q2_K_ref(const void* w, const void* act, int64_t n) {
    const auto* x = static_cast<const block_q2_K*>(w);
    const auto* y = static_cast<const block_q8_K*>(act);
    float acc[8] = {};
    for (int64_t b = 0; b < n / QK_K; ++b) {
        const float d = y[b].d * fp16(x[b].d);
        const float dmin = -y[b].d * fp16(x[b].dmin);
        for (int k = 0; k < 8; ++k) {
            const int prod = (x[b].scales[2 * k] >> 4) * y[b].bsums[2 * k] +
                             (x[b].scales[2 * k + 1] >> 4) * y[b].bsums[2 * k + 1];
            acc[k] = std::fma(dmin, static_cast<float>(prod), acc[k]);
        }
        int32_t lanes[8] = {};
        for (int j = 0; j < 2; ++j) {  // 128-value halves
            const uint8_t* q2 = x[b].qs + 32 * j;
            const int8_t* q8 = y[b].qs + 128 * j;
            for (int s = 0; s < 4; ++s)
                for (int i = 0; i < 32; ++i) {
                    const int scale = x[b].scales[8 * j + 2 * s + i / 16] & 0xF;
                    lanes[i / 4] += scale * ((q2[i] >> (2 * s)) & 3) * q8[32 * s + i];
                }
        }
        for (int k = 0; k < 8; ++k) acc[k] = std::fma(d, static_cast<float>(lanes[k]), acc[k]);
    }
    return hsum8(acc);
}

float dot_q3_K_ref(const void* w, const void* act, int64_t n) {
    const auto* x = static_cast<const block_q3_K*>(w);
    const auto* y = static_cast<const block_q8_K*>(act);
    float acc[8] = {};
    int8_t scales[16];
    for (int64_t b = 0; b < n / QK_K; ++b) {
        const float d = y[b].d * fp16(x[b].d);
        detail::q3k_scales(x[b].scales, scales);
        int32_t lanes[8] = {};
        for (int j = 0; j < 2; ++j) {
            const uint8_t* q3 = x[b].qs + 32 * j;
            const int8_t* q8 = y[b].qs + 128 * j;
            for (int s = 0; s < 4; ++s) {
                const int bit = 4 * j + s;
                for (int i = 0; i < 32; ++i) {
                    const int q = ((q3[i] >> (2 * s)) & 3) - (((x[b].hmask[i] >> bit) & 1) ? 0 : 4);
                    lanes[i / 4] += scales[8 * j + 2 * s + i / 16] * q * q8[32 * s + i];
                }
            }
        }
        for (int k = 0; k < 8; ++k) acc[k] = std::fma(d, static_cast<float>(lanes[k]), acc[k]);
    }
    return hsum8(acc);
}

// The min term of Q4_K/Q5_K: mins · (sums of 32 activations), four int32 lanes.
void k4_min_products(const uint8_t* packed, const int16_t* bsums, int32_t prod[4]) {
    int mins[8], sc;
    for (int j = 0; j < 8; ++j) detail::scale_min_k4(j, packed, &sc, &mins[j]);
    int q8s[8];
    for (int j = 0; j < 8; ++j) q8s[j] = bsums[2 * j] + bsums[2 * j + 1];
    for (int m = 0; m < 4; ++m)
        prod[m] = mins[2 * m] * q8s[2 * m] + mins[2 * m + 1] * q8s[2 * m + 1];
}

float dot_q4_K_ref(const void* w, const void* act, int64_t n) {
    const auto* x = static_cast<const block_q4_K*>(w);
    const auto* y = static_cast<const block_q8_K*>(act);
    float acc[8] = {}, acc_m[4] = {};
    for (int64_t b = 0; b < n / QK_K; ++b) {
        const float d = y[b].d * fp16(x[b].d);
        const float dmin = -y[b].d * fp16(x[b].dmin);
        int32_t prod[4];
        k4_min_products(x[b].scales, y[b].bsums, prod);
        for (int m = 0; m < 4; ++m)
            acc_m[m] = std::fma(dmin, static_cast<float>(prod[m]), acc_m[m]);
        int32_t lanes[8] = {};
        for (int j = 0; j < 4; ++j) {  // 64-value groups: low nibbles, then high nibbles
            int sc_lo, sc_hi, m;
            detail::scale_min_k4(2 * j, x[b].scales, &sc_lo, &m);
            detail::scale_min_k4(2 * j + 1, x[b].scales, &sc_hi, &m);
            const uint8_t* q4 = x[b].qs + 32 * j;
            const int8_t* q8 = y[b].qs + 64 * j;
            for (int i = 0; i < 32; ++i)
                lanes[i / 4] += sc_lo * (q4[i] & 0xF) * q8[i] + sc_hi * (q4[i] >> 4) * q8[32 + i];
        }
        for (int k = 0; k < 8; ++k) acc[k] = std::fma(d, static_cast<float>(lanes[k]), acc[k]);
    }
    return hsum8(acc) + ((acc_m[0] + acc_m[2]) + (acc_m[1] + acc_m[3]));
}

float dot_q5_K_ref(const void* w, const void* act, int64_t n) {
    const auto* x = static_cast<const block_q5_K*>(w);
    const auto* y = static_cast<const block_q8_K*>(act);
    float acc[8] = {};
    float summs = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
        const float d = y[b].d * fp16(x[b].d);
        const float dmin = -y[b].d * fp16(x[b].dmin);
        int32_t prod[4];
        k4_min_products(x[b].scales, y[b].bsums, prod);
        // fused, as GCC contracts ggml's "summs += dmin * sum" (checked against ggml-cpu)
        summs = std::fma(dmin, static_cast<float>(prod[0] + prod[1] + prod[2] + prod[3]), summs);
        int32_t lanes[8] = {};
        for (int j = 0; j < 4; ++j) {
            int sc_lo, sc_hi, m;
            detail::scale_min_k4(2 * j, x[b].scales, &sc_lo, &m);
            detail::scale_min_k4(2 * j + 1, x[b].scales, &sc_hi, &m);
            const uint8_t* q5 = x[b].qs + 32 * j;
            const int8_t* q8 = y[b].qs + 64 * j;
            for (int i = 0; i < 32; ++i) {
                const int lo = (q5[i] & 0xF) | (((x[b].qh[i] >> (2 * j)) & 1) << 4);
                const int hi = (q5[i] >> 4) | (((x[b].qh[i] >> (2 * j + 1)) & 1) << 4);
                lanes[i / 4] += sc_lo * lo * q8[i] + sc_hi * hi * q8[32 + i];
            }
        }
        for (int k = 0; k < 8; ++k) acc[k] = std::fma(d, static_cast<float>(lanes[k]), acc[k]);
    }
    return hsum8(acc) + summs;
}

float dot_q6_K_ref(const void* w, const void* act, int64_t n) {
    const auto* x = static_cast<const block_q6_K*>(w);
    const auto* y = static_cast<const block_q8_K*>(act);
    float acc[8] = {};
    for (int64_t b = 0; b < n / QK_K; ++b) {
        const float d = y[b].d * fp16(x[b].d);
        int32_t lanes[8] = {};
        for (int j = 0; j < 2; ++j) {
            const uint8_t* ql = x[b].ql + 64 * j;
            const uint8_t* qh = x[b].qh + 32 * j;
            const int8_t* sc = x[b].scales + 8 * j;
            const int8_t* q8 = y[b].qs + 128 * j;
            for (int i = 0; i < 32; ++i) {
                const int q0 = ((ql[i] & 0xF) | ((qh[i] & 3) << 4)) - 32;
                const int q1 = ((ql[32 + i] & 0xF) | (((qh[i] >> 2) & 3) << 4)) - 32;
                const int q2 = ((ql[i] >> 4) | (((qh[i] >> 4) & 3) << 4)) - 32;
                const int q3 = ((ql[32 + i] >> 4) | (((qh[i] >> 6) & 3) << 4)) - 32;
                const int s = i / 16;
                lanes[i / 4] += sc[s] * q0 * q8[i] + sc[2 + s] * q1 * q8[32 + i] +
                                sc[4 + s] * q2 * q8[64 + i] + sc[6 + s] * q3 * q8[96 + i];
            }
        }
        for (int k = 0; k < 8; ++k) acc[k] = std::fma(d, static_cast<float>(lanes[k]), acc[k]);
    }
    return hsum8(acc);
}

float dot_iq4_xs_ref(const void* w, const void* act, int64_t n) {
    const auto* x = static_cast<const block_iq4_xs*>(w);
    const auto* y = static_cast<const block_q8_K*>(act);
    float acc[8] = {};
    for (int64_t b = 0; b < n / QK_K; ++b) {
        int32_t lanes[8] = {};
        for (int ib = 0; ib < 8; ++ib) {  // 32-value sub-blocks
            const int ls = ((x[b].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) |
                           (((x[b].scales_h >> (2 * ib)) & 3) << 4);
            const uint8_t* qs = x[b].qs + 16 * ib;
            const int8_t* q8 = y[b].qs + 32 * ib;
            for (int i = 0; i < 32; ++i) {
                const int v = tables::kvalues_iq4nl[i < 16 ? qs[i] & 0xF : qs[i - 16] >> 4];
                lanes[i / 4] += (ls - 32) * v * q8[i];
            }
        }
        const float d = fp16(x[b].d) * y[b].d;
        for (int k = 0; k < 8; ++k) acc[k] = std::fma(d, static_cast<float>(lanes[k]), acc[k]);
    }
    return hsum8(acc);
}

// The main loop of ggml's AVX2 F16 and BF16 dots: four accumulators of eight lanes, value
// i + 8j + k of each 32-value step fused into acc[j][k]; np is a multiple of 32.
template <float (*to_f32)(uint16_t)>
void fma_32_value_steps(const uint16_t* x, const float* y, int64_t np, float acc[4][8]) {
    for (int64_t i = 0; i < np; i += 32)
        for (int j = 0; j < 4; ++j)
            for (int k = 0; k < 8; ++k) {
                const int64_t e = i + 8 * j + k;
                acc[j][k] = std::fma(to_f32(x[e]), y[e], acc[j][k]);
            }
}

// F16 × F16 (ggml_vec_dot_f16 on AVX2): four accumulators of eight lanes over 32-value
// steps, fused multiply-adds, reduced (x0+x2, x1+x3, then the two, then the lanes as
// (l0+l4 + l1+l5) + (l2+l6 + l3+l7)) into a double; values past the last full step are
// added in double.
float dot_f16_ref(const void* w, const void* act, int64_t n) {
    const auto* x = static_cast<const uint16_t*>(w);
    const auto* y = static_cast<const float*>(act);  // F16 values (quantize_act_row)
    const int64_t np = n & ~int64_t{31};
    float sum[4][8] = {};
    fma_32_value_steps<f16_to_f32>(x, y, np, sum);
    double sumf = detail::reduce_f16_accumulators(sum);
    for (int64_t i = np; i < n; ++i) sumf += static_cast<double>(f16_to_f32(x[i]) * y[i]);
    return static_cast<float>(sumf);
}

// BF16 × BF16 (ggml_vec_dot_bf16 on AVX2): four accumulators of eight lanes over 32-value
// steps, each product added to its lane (GCC fuses ggml's mul + add into one FMA), reduced
// as (c0+c2) + (c1+c3) then the lanes as hsum8, into a double; the tail is added in double.
float dot_bf16_ref(const void* w, const void* act, int64_t n) {
    const auto* x = static_cast<const uint16_t*>(w);
    const auto* y = static_cast<const float*>(act);  // BF16 values (quantize_act_row)
    const int64_t np = n & ~int64_t{31};
    float c[4][8] = {};
    fma_32_value_steps<bf16_to_f32>(x, y, np, c);
    float sum[8];
    for (int k = 0; k < 8; ++k) sum[k] = (c[0][k] + c[2][k]) + (c[1][k] + c[3][k]);
    double sumf = hsum8(sum);
    for (int64_t i = np; i < n; ++i) sumf += static_cast<double>(bf16_to_f32(x[i]) * y[i]);
    return static_cast<float>(sumf);
}

// TQ2_0 (ggml's AVX2 kernel): weights 0..2 from 2-bit fields, element i = 128h + 32g + p
// taking bits 2g of byte 32h + p; lane k sums (weight · q8) over positions 4k..4k+3 of every
// 32-value chunk, less the 32 activations 32k..32k+31 (the −1 offset, from the bsums); per
// block acc = fma(lanes, y.d · fp16(d), acc).
void tq2_0_lanes(const block_tq2_0& x, const block_q8_K& y, int32_t lanes[8]) {
    for (int k = 0; k < 8; ++k) lanes[k] = -(y.bsums[2 * k] + y.bsums[2 * k + 1]);
    for (int i = 0; i < QK_K; ++i) {
        const int h = i / 128, g = (i % 128) / 32, p = i % 32;
        lanes[p / 4] += ((x.qs[32 * h + p] >> (2 * g)) & 3) * y.qs[i];
    }
}

float dot_tq2_0_ref(const void* w, const void* act, int64_t n) {
    const auto* x = static_cast<const block_tq2_0*>(w);
    const auto* y = static_cast<const block_q8_K*>(act);
    float acc[8] = {};
    int32_t lanes[8];
    for (int64_t b = 0; b < n / QK_K; ++b) {
        tq2_0_lanes(x[b], y[b], lanes);
        const float d = y[b].d * fp16(x[b].d);
        for (int k = 0; k < 8; ++k) acc[k] = std::fma(static_cast<float>(lanes[k]), d, acc[k]);
    }
    return hsum8(acc);
}

// TQ1_0 (ggml's AVX2 kernel): the trits 0..2 in element order (detail::decode_tq1_0), then
// TQ2_0's lanes: Σ trit · q8 over positions 4k..4k+3 of every 32-value chunk, less the bsums.
float dot_tq1_0_ref(const void* w, const void* act, int64_t n) {
    const auto* x = static_cast<const block_tq1_0*>(w);
    const auto* y = static_cast<const block_q8_K*>(act);
    float acc[8] = {};
    uint8_t trits[QK_K];
    for (int64_t b = 0; b < n / QK_K; ++b) {
        detail::decode_tq1_0(x + b, trits);
        int32_t lanes[8];
        for (int k = 0; k < 8; ++k) lanes[k] = -(y[b].bsums[2 * k] + y[b].bsums[2 * k + 1]);
        for (int i = 0; i < QK_K; ++i) lanes[(i % 32) / 4] += trits[i] * y[b].qs[i];
        const float d = y[b].d * fp16(x[b].d);
        for (int k = 0; k < 8; ++k) acc[k] = std::fma(static_cast<float>(lanes[k]), d, acc[k]);
    }
    return hsum8(acc);
}

float dot_q4_0_ref(const void* w, const void* a, int64_t n) {
    return dot_legacy_ref<block_q4_0>(w, a, n, q4_0_value);
}
float dot_q5_0_ref(const void* w, const void* a, int64_t n) {
    return dot_legacy_ref<block_q5_0>(w, a, n, q5_0_value);
}
float dot_q8_0_ref(const void* w, const void* a, int64_t n) {
    return dot_legacy_ref<block_q8_0>(w, a, n, q8_0_value);
}
float dot_q4_1_ref(const void* w, const void* a, int64_t n) {
    return dot_legacy1_ref<block_q4_1>(w, a, n, q4_1_value);
}
float dot_q5_1_ref(const void* w, const void* a, int64_t n) {
    return dot_legacy1_ref<block_q5_1>(w, a, n, q5_1_value);
}

// ---- i-quants ------------------------------------------------------------------------------

}  // namespace

namespace detail {
namespace {

int8_t signed_value(uint8_t magnitude, uint8_t signs, int j) {
    return static_cast<int8_t>((signs >> j) & 1 ? -magnitude : magnitude);
}

void set_scales32(IqBlock& out, int ib32, int sc_lo, int sc_hi) {
    out.sc[2 * ib32] = static_cast<int16_t>(sc_lo);
    out.sc[2 * ib32 + 1] = static_cast<int16_t>(sc_hi);
}

// Group l (8 values) of sub-block ib32 of an IQ3 block: two 4-value grid points, one sign
// byte for all eight.
void put_iq3_group(IqBlock& out, int ib32, int l, const uint8_t* g1, const uint8_t* g2,
                   uint8_t signs) {
    for (int j = 0; j < 4; ++j) {
        out.w[32 * ib32 + 8 * l + j] = signed_value(g1[j], signs, j);
        out.w[32 * ib32 + 8 * l + 4 + j] = signed_value(g2[j], signs, j + 4);
    }
}

}  // namespace

void decode_iq2_xxs(const void* block, IqBlock& out) {
    const auto& x = *static_cast<const block_iq2_xxs*>(block);
    for (int ib32 = 0; ib32 < 8; ++ib32) {
        uint32_t aux[2];
        std::memcpy(aux, x.qs + 4 * ib32, 8);
        const int sc = 2 * static_cast<int>(aux[1] >> 28) + 1;
        set_scales32(out, ib32, sc, sc);
        for (int l = 0; l < 4; ++l) {
            const uint8_t index = static_cast<uint8_t>(aux[0] >> (8 * l));
            const auto* grid = reinterpret_cast<const uint8_t*>(tables::iq2xxs_grid + index);
            const uint8_t signs = tables::ksigns_iq2xs[(aux[1] >> (7 * l)) & 127];
            for (int j = 0; j < 8; ++j)
                out.w[32 * ib32 + 8 * l + j] = signed_value(grid[j], signs, j);
        }
        out.delta[ib32] = 0;
    }
}

void decode_iq2_xs(const void* block, IqBlock& out) {
    const auto& x = *static_cast<const block_iq2_xs*>(block);
    for (int ib32 = 0; ib32 < 8; ++ib32) {
        set_scales32(out, ib32, 2 * (x.scales[ib32] & 0xF) + 1, 2 * (x.scales[ib32] >> 4) + 1);
        for (int l = 0; l < 4; ++l) {
            const uint16_t q = x.qs[4 * ib32 + l];
            const auto* grid = reinterpret_cast<const uint8_t*>(tables::iq2xs_grid + (q & 511));
            const uint8_t signs = tables::ksigns_iq2xs[q >> 9];
            for (int j = 0; j < 8; ++j)
                out.w[32 * ib32 + 8 * l + j] = signed_value(grid[j], signs, j);
        }
        out.delta[ib32] = 0;
    }
}

void decode_iq2_s(const void* block, IqBlock& out) {
    const auto& x = *static_cast<const block_iq2_s*>(block);
    const uint8_t* signs = x.qs + QK_K / 8;
    for (int ib32 = 0; ib32 < 8; ++ib32) {
        set_scales32(out, ib32, 2 * (x.scales[ib32] & 0xF) + 1, 2 * (x.scales[ib32] >> 4) + 1);
        for (int l = 0; l < 4; ++l) {
            const int index = x.qs[4 * ib32 + l] | ((x.qh[ib32] << (8 - 2 * l)) & 0x300);
            const auto* grid = reinterpret_cast<const uint8_t*>(tables::iq2s_grid + index);
            for (int j = 0; j < 8; ++j)
                out.w[32 * ib32 + 8 * l + j] = signed_value(grid[j], signs[4 * ib32 + l], j);
        }
        out.delta[ib32] = 0;
    }
}

void decode_iq3_xxs(const void* block, IqBlock& out) {
    const auto& x = *static_cast<const block_iq3_xxs*>(block);
    const uint8_t* scales_and_signs = x.qs + QK_K / 4;
    for (int ib32 = 0; ib32 < 8; ++ib32) {
        uint32_t aux;
        std::memcpy(&aux, scales_and_signs + 4 * ib32, 4);
        const int sc = 2 * static_cast<int>(aux >> 28) + 1;
        set_scales32(out, ib32, sc, sc);
        const uint8_t* qs = x.qs + 8 * ib32;
        for (int l = 0; l < 4; ++l) {
            const uint8_t signs = tables::ksigns_iq2xs[(aux >> (7 * l)) & 127];
            const auto* g1 = reinterpret_cast<const uint8_t*>(tables::iq3xxs_grid + qs[2 * l]);
            const auto* g2 = reinterpret_cast<const uint8_t*>(tables::iq3xxs_grid + qs[2 * l + 1]);
            put_iq3_group(out, ib32, l, g1, g2, signs);
        }
        out.delta[ib32] = 0;
    }
}

void decode_iq3_s(const void* block, IqBlock& out) {
    const auto& x = *static_cast<const block_iq3_s*>(block);
    for (int ib32 = 0; ib32 < 8; ++ib32) {
        const int ls = ib32 % 2 ? x.scales[ib32 / 2] >> 4 : x.scales[ib32 / 2] & 0xF;
        set_scales32(out, ib32, 2 * ls + 1, 2 * ls + 1);
        const uint8_t* qs = x.qs + 8 * ib32;
        const uint8_t qh = x.qh[ib32];
        for (int l = 0; l < 4; ++l) {
            const int i1 = qs[2 * l] | ((qh << (8 - 2 * l)) & 256);
            const int i2 = qs[2 * l + 1] | ((qh << (7 - 2 * l)) & 256);
            const auto* g1 = reinterpret_cast<const uint8_t*>(tables::iq3s_grid + i1);
            const auto* g2 = reinterpret_cast<const uint8_t*>(tables::iq3s_grid + i2);
            const uint8_t signs = x.signs[4 * ib32 + l];
            put_iq3_group(out, ib32, l, g1, g2, signs);
        }
        out.delta[ib32] = 0;
    }
}

void decode_iq1_s(const void* block, IqBlock& out) {
    const auto& x = *static_cast<const block_iq1_s*>(block);
    for (int ib = 0; ib < 8; ++ib) {
        const uint16_t qh = x.qh[ib];
        const int sc = 2 * ((qh >> 12) & 7) + 1;
        set_scales32(out, ib, sc, sc);
        out.delta[ib] = qh & 0x8000 ? -1 : 1;
        for (int l = 0; l < 4; ++l) {
            const int index = x.qs[4 * ib + l] | (((qh >> (3 * l)) & 7) << 8);
            const auto* grid = reinterpret_cast<const int8_t*>(tables::iq1s_grid + index);
            for (int j = 0; j < 8; ++j) out.w[32 * ib + 8 * l + j] = grid[j];
        }
    }
}

void decode_iq1_m(const void* block, IqBlock& out, int8_t delta8[32], uint16_t* d) {
    const auto& x = *static_cast<const block_iq1_m*>(block);
    uint16_t sc[4];
    std::memcpy(sc, x.scales, 8);
    *d = static_cast<uint16_t>((sc[0] >> 12) | ((sc[1] >> 8) & 0x00F0) | ((sc[2] >> 4) & 0x0F00) |
                               (sc[3] & 0xF000));
    for (int ib = 0; ib < 8; ++ib) {
        const int shift = 6 * (ib % 2);
        set_scales32(out, ib, 2 * ((sc[ib / 2] >> shift) & 7) + 1,
                     2 * ((sc[ib / 2] >> (shift + 3)) & 7) + 1);
        out.delta[ib] = 0;
        for (int l = 0; l < 4; ++l) {
            const uint8_t qh = x.qh[2 * ib + l / 2];
            const int high = l % 2 ? (qh << 4) & 0x700 : (qh << 8) & 0x700;
            const auto* grid =
                reinterpret_cast<const int8_t*>(tables::iq1s_grid + (x.qs[4 * ib + l] | high));
            for (int j = 0; j < 8; ++j) out.w[32 * ib + 8 * l + j] = grid[j];
            delta8[4 * ib + l] = qh & (l % 2 ? 0x80 : 0x08) ? -1 : 1;
        }
    }
}

void decode_tq1_0(const void* block, uint8_t trits[256]) {
    const auto& x = *static_cast<const block_tq1_0*>(block);
    static constexpr uint8_t kPow3[5] = {1, 3, 9, 27, 81};
    // trit k of a byte: the top of (byte · 3^k mod 256) · 3
    const auto trit = [](uint8_t byte, int k) {
        return static_cast<uint8_t>((static_cast<uint8_t>(byte * kPow3[k]) * 3) >> 8);
    };
    int i = 0;
    for (int k = 0; k < 5; ++k)  // bytes 0..31: 5 chunks of 32
        for (int m = 0; m < 32; ++m) trits[i++] = trit(x.qs[m], k);
    for (int k = 0; k < 5; ++k)  // bytes 32..47: 5 runs of 16
        for (int m = 0; m < 16; ++m) trits[i++] = trit(x.qs[32 + m], k);
    for (int k = 0; k < 4; ++k)  // qh: 4 runs of 4
        for (int m = 0; m < 4; ++m) trits[i++] = trit(x.qh[m], k);
}

}  // namespace detail

namespace {

using detail::IqBlock;

// The reference twin of detail::dot_iq_avx2, in plain loops.
float dot_iq_ref(detail::IqDecodeFn decode, size_t block_bytes, float factor, bool delta,
                 const void* w, const void* act, int64_t n) {
    const auto* x = static_cast<const uint8_t*>(w);
    const auto* y = static_cast<const block_q8_K*>(act);
    float acc[8] = {}, delta_acc = 0.0f;
    IqBlock q;
    for (int64_t b = 0; b < n / QK_K; ++b) {
        const uint8_t* block = x + b * block_bytes;
        decode(block, q);
        int32_t lanes[8] = {};
        int delta_sum = 0;
        for (int i = 0; i < QK_K; ++i) lanes[(i % 32) / 4] += q.sc[i / 16] * q.w[i] * y[b].qs[i];
        for (int ib = 0; ib < 8; ++ib)
            delta_sum += q.delta[ib] * q.sc[2 * ib] * (y[b].bsums[2 * ib] + y[b].bsums[2 * ib + 1]);
        half h;
        std::memcpy(&h, block, 2);  // every type here starts with its F16 scale
        const float d = fp16(h) * y[b].d;
        for (int k = 0; k < 8; ++k) acc[k] = std::fma(d, static_cast<float>(lanes[k]), acc[k]);
        delta_acc = std::fma(d, static_cast<float>(delta_sum), delta_acc);
    }
    const float sum = factor * hsum8(acc);
    return delta ? sum + 0.125f * delta_acc : sum;
}

float dot_iq1_m_ref(const void* w, const void* act, int64_t n) {
    const auto* x = static_cast<const block_iq1_m*>(w);
    const auto* y = static_cast<const block_q8_K*>(act);
    float acc1[8] = {}, acc2[8] = {};
    IqBlock q;
    int8_t delta8[32];
    for (int64_t b = 0; b < n / QK_K; ++b) {
        uint16_t h;
        detail::decode_iq1_m(x + b, q, delta8, &h);
        int32_t lanes1[8] = {}, lanes2[8] = {};
        for (int i = 0; i < QK_K; ++i) {
            lanes1[(i % 32) / 4] += q.sc[i / 16] * q.w[i] * y[b].qs[i];
            lanes2[(i % 32) / 4] += q.sc[i / 16] * delta8[i / 8] * y[b].qs[i];
        }
        const float d = y[b].d * fp16(h);
        for (int k = 0; k < 8; ++k) {
            acc1[k] = std::fma(d, static_cast<float>(lanes1[k]), acc1[k]);
            acc2[k] = std::fma(d, static_cast<float>(lanes2[k]), acc2[k]);
        }
    }
    return hsum8(acc1) + 0.125f * hsum8(acc2);
}

// Each i-quant's parameters of the shared dot (detail::dot_iq_avx2 and its twin dot_iq_ref),
// in one place for both kernels.
struct IqDot {
    detail::IqDecodeFn decode;
    size_t block_bytes;
    float factor;
    bool delta;
};
constexpr IqDot kIq2xxsDot{detail::decode_iq2_xxs, sizeof(block_iq2_xxs), 0.125f, false};
constexpr IqDot kIq2xsDot{detail::decode_iq2_xs, sizeof(block_iq2_xs), 0.125f, false};
constexpr IqDot kIq2sDot{detail::decode_iq2_s, sizeof(block_iq2_s), 0.125f, false};
constexpr IqDot kIq3xxsDot{detail::decode_iq3_xxs, sizeof(block_iq3_xxs), 0.25f, false};
constexpr IqDot kIq3sDot{detail::decode_iq3_s, sizeof(block_iq3_s), 1.0f, false};
constexpr IqDot kIq1sDot{detail::decode_iq1_s, sizeof(block_iq1_s), 1.0f, true};

template <const IqDot& P>
float dot_iq_ref_of(const void* w, const void* a, int64_t n) {
    return dot_iq_ref(P.decode, P.block_bytes, P.factor, P.delta, w, a, n);
}
template <const IqDot& P>
float dot_iq_avx2_of(const void* w, const void* a, int64_t n) {
    return detail::dot_iq_avx2(P.decode, P.block_bytes, P.factor, P.delta, w, a, n);
}

// ---- llamafile's tinyBLAS (ggml's product of a prompt) ----------------------------------

// F16 / BF16 × the activations in their type: one accumulator of eight lanes (lane = index
// mod 8), one FMA per value (the product of two 11- or 8-bit mantissas is exact), hsum8.
template <float (*to_f32)(uint16_t)>
float dot_lanes_ref(const void* w, const void* act, int64_t n) {
    const auto* x = static_cast<const uint16_t*>(w);
    const auto* y = static_cast<const float*>(act);
    float acc[8] = {};
    for (int64_t i = 0; i < n; i += 8)
        for (int k = 0; k < 8; ++k) acc[k] = std::fma(to_f32(x[i + k]), y[i + k], acc[k]);
    return hsum8(acc);
}
float dot_f16_lanes_ref(const void* w, const void* act, int64_t n) {
    return dot_lanes_ref<f16_to_f32>(w, act, n);
}
float dot_bf16_lanes_ref(const void* w, const void* act, int64_t n) {
    return dot_lanes_ref<bf16_to_f32>(w, act, n);
}
// IQ4_NL as tinyBLAS_Q0_AVX sums it: Q4_0's one accumulator over every block (where
// ggml_vec_dot_iq4_nl_q8_0 alternates two).
float dot_iq4_nl_gemm_ref(const void* w, const void* act, int64_t n) {
    return dot_legacy_ref<block_iq4_nl>(w, act, n, iq4_nl_value);
}

struct GemmKernel {
    GgmlType type;
    detail::DotFn ref;
    detail::DotFn avx2;
    detail::Dot4Fn avx2_4;
};
const GemmKernel kGemmKernels[] = {
    {GgmlType::F16, dot_f16_lanes_ref, detail::dot_f16_lanes_avx2, detail::dot4_f16_lanes_avx2},
    {GgmlType::BF16, dot_bf16_lanes_ref, detail::dot_bf16_lanes_avx2, detail::dot4_bf16_lanes_avx2},
    {GgmlType::IQ4_NL, dot_iq4_nl_gemm_ref, nullptr, nullptr},
};
const GemmKernel* find_gemm(GgmlType type) {
    for (const GemmKernel& k : kGemmKernels)
        if (k.type == type) return &k;
    return nullptr;
}

// ---- dispatch ----------------------------------------------------------------------------

struct Kernel {
    GgmlType type;
    GgmlType act;
    detail::DotFn ref;
    detail::DotFn avx2;     // nullptr: the reference twin is the only implementation
    detail::Dot4Fn avx2_4;  // four activation rows at once, or nullptr
};

const Kernel kKernels[] = {
    {GgmlType::F16, GgmlType::F16, dot_f16_ref, detail::dot_f16_avx2, detail::dot4_f16_avx2},
    {GgmlType::BF16, GgmlType::BF16, dot_bf16_ref, detail::dot_bf16_avx2, nullptr},
    {GgmlType::Q4_0, GgmlType::Q8_0, dot_q4_0_ref, detail::dot_q4_0_avx2, nullptr},
    {GgmlType::Q4_1, GgmlType::Q8_1, dot_q4_1_ref, detail::dot_q4_1_avx2, nullptr},
    {GgmlType::Q5_0, GgmlType::Q8_0, dot_q5_0_ref, detail::dot_q5_0_avx2, nullptr},
    {GgmlType::Q5_1, GgmlType::Q8_1, dot_q5_1_ref, detail::dot_q5_1_avx2, nullptr},
    {GgmlType::Q8_0, GgmlType::Q8_0, dot_q8_0_ref, detail::dot_q8_0_avx2, detail::dot4_q8_0_avx2},
    {GgmlType::Q2_K, GgmlType::Q8_K, dot_q2_K_ref, detail::dot_q2_K_avx2, nullptr},
    {GgmlType::Q3_K, GgmlType::Q8_K, dot_q3_K_ref, detail::dot_q3_K_avx2, nullptr},
    {GgmlType::Q4_K, GgmlType::Q8_K, dot_q4_K_ref, detail::dot_q4_K_avx2, detail::dot4_q4_K_avx2},
    {GgmlType::Q5_K, GgmlType::Q8_K, dot_q5_K_ref, detail::dot_q5_K_avx2, nullptr},
    {GgmlType::Q6_K, GgmlType::Q8_K, dot_q6_K_ref, detail::dot_q6_K_avx2, detail::dot4_q6_K_avx2},
    {GgmlType::IQ4_NL, GgmlType::Q8_0, dot_iq4_nl_ref, detail::dot_iq4_nl_avx2, nullptr},
    {GgmlType::MXFP4, GgmlType::Q8_0, dot_mxfp4_ref, detail::dot_mxfp4_avx2, nullptr},
    {GgmlType::IQ4_XS, GgmlType::Q8_K, dot_iq4_xs_ref, detail::dot_iq4_xs_avx2, nullptr},
    {GgmlType::IQ2_XXS, GgmlType::Q8_K, dot_iq_ref_of<kIq2xxsDot>, dot_iq_avx2_of<kIq2xxsDot>,
     nullptr},
    {GgmlType::IQ2_XS, GgmlType::Q8_K, dot_iq_ref_of<kIq2xsDot>, dot_iq_avx2_of<kIq2xsDot>,
     nullptr},
    {GgmlType::IQ2_S, GgmlType::Q8_K, dot_iq_ref_of<kIq2sDot>, dot_iq_avx2_of<kIq2sDot>, nullptr},
    {GgmlType::IQ3_XXS, GgmlType::Q8_K, dot_iq_ref_of<kIq3xxsDot>, dot_iq_avx2_of<kIq3xxsDot>,
     nullptr},
    {GgmlType::IQ3_S, GgmlType::Q8_K, dot_iq_ref_of<kIq3sDot>, dot_iq_avx2_of<kIq3sDot>, nullptr},
    {GgmlType::IQ1_S, GgmlType::Q8_K, dot_iq_ref_of<kIq1sDot>, dot_iq_avx2_of<kIq1sDot>, nullptr},
    {GgmlType::IQ1_M, GgmlType::Q8_K, dot_iq1_m_ref, detail::dot_iq1_m_avx2, nullptr},
    {GgmlType::TQ2_0, GgmlType::Q8_K, dot_tq2_0_ref, detail::dot_tq2_0_avx2, nullptr},
    {GgmlType::TQ1_0, GgmlType::Q8_K, dot_tq1_0_ref, detail::dot_tq1_0_avx2, nullptr},
};

}  // namespace

bool detail::cpu_has_avx512bw() {
#if defined(__x86_64__) || defined(__i386__)
    // QUANTLENS_AVX512=0 keeps the AVX2 kernels (to measure one against the other).
    static const bool has = [] {
        const char* env = std::getenv("QUANTLENS_AVX512");
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               !(env && std::string(env) == "0");
    }();
    return has;
#else
    return false;
#endif
}

namespace {

bool cpu_has_avx2_fma() {
#if defined(__x86_64__) || defined(__i386__)
    // F16C through CPUID: clang 14's __builtin_cpu_supports does not know "f16c".
    static const bool has = [] {
        unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
        const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
    }();
    return has;
#else
    return false;
#endif
}

// The AVX-512 kernels, preferred where the CPU has them (vec_dot_impl.h).
struct Avx512Kernel {
    GgmlType type;
    detail::DotFn one;
    detail::Dot4Fn four;
};
const Avx512Kernel kAvx512Kernels[] = {
    {GgmlType::Q4_K, detail::dot_q4_K_avx512, detail::dot4_q4_K_avx512},
    {GgmlType::Q6_K, detail::dot_q6_K_avx512, detail::dot4_q6_K_avx512},
};

const Avx512Kernel* avx512_kernel(GgmlType type) {
    if (!cpu_has_avx2_fma() || !detail::cpu_has_avx512bw()) return nullptr;
    for (const Avx512Kernel& k : kAvx512Kernels)
        if (k.type == type) return &k;
    return nullptr;
}

const Kernel* find(GgmlType type) {
    for (const Kernel& k : kKernels)
        if (k.type == type) return &k;
    return nullptr;
}

const Kernel& get(GgmlType type) {
    const Kernel* k = find(type);
    QL_ASSERT(k != nullptr);  // callers check supported() first
    return *k;
}

}  // namespace

bool supported(GgmlType type) {
    return find(type) != nullptr;
}
GgmlType act_type(GgmlType type) {
    return get(type).act;
}

size_t act_row_size(GgmlType type, int64_t n) {
    // F16 activations are held as floats (see quantize_act_row)
    return act_type(type) == GgmlType::F16 || act_type(type) == GgmlType::BF16
               ? static_cast<size_t>(n) * sizeof(float)
               : ggml_row_size(act_type(type), n);
}

void quantize_act_row(GgmlType type, const float* x, void* dst, int64_t n) {
    switch (act_type(type)) {
        case GgmlType::F16: {  // ggml converts the activations of an F16 product to F16;
            // kept as the (exact) floats of those halves, so the dot converts only weights
            auto* h = static_cast<float*>(dst);
            for (int64_t i = 0; i < n; ++i) h[i] = round_to_f16(x[i]);
            return;
        }
        case GgmlType::BF16: {  // likewise: the floats of ggml's BF16 conversion
            auto* h = static_cast<float*>(dst);
            for (int64_t i = 0; i < n; ++i) h[i] = bf16_to_f32(f32_to_bf16(x[i]));
            return;
        }
        case GgmlType::Q8_0:
            return quantize_q8_0_or_1<false>(x, dst, n);
        case GgmlType::Q8_1:
            return quantize_q8_0_or_1<true>(x, dst, n);
        default:
            return quantize_q8_K(x, dst, n);
    }
}

float dot_ref(GgmlType type, const void* w, const void* act, int64_t n) {
    return get(type).ref(w, act, n);
}

bool has_fast_path(GgmlType type) {
    return get(type).avx2 != nullptr && cpu_has_avx2_fma();
}

float dot(GgmlType type, const void* w, const void* act, int64_t n) {
    const Kernel& k = get(type);
    if (const Avx512Kernel* wide = avx512_kernel(type)) return wide->one(w, act, n);
    return k.avx2 && cpu_has_avx2_fma() ? k.avx2(w, act, n) : k.ref(w, act, n);
}

void dot4(GgmlType type, const void* w, const void* act, size_t stride, int64_t n, float* out) {
    const Kernel& k = get(type);
    if (const Avx512Kernel* wide = avx512_kernel(type)) return wide->four(w, act, stride, n, out);
    if (k.avx2_4 && cpu_has_avx2_fma()) return k.avx2_4(w, act, stride, n, out);
    for (int r = 0; r < 4; ++r)
        out[r] = dot(type, w, static_cast<const uint8_t*>(act) + r * stride, n);
}

bool gemm_order(GgmlType type, int64_t n, int64_t out_rows) {
    if (!find_gemm(type)) return false;
    // tinyBLAS takes F16/BF16 only in whole tiles: 4 output rows, 8 values per step.
    if (type == GgmlType::F16 || type == GgmlType::BF16) return n % 8 == 0 && out_rows % 4 == 0;
    return true;
}

float gemm_dot(GgmlType type, const void* w, const void* act, int64_t n) {
    const GemmKernel* k = find_gemm(type);
    QL_ASSERT(k != nullptr);
    return k->avx2 && cpu_has_avx2_fma() ? k->avx2(w, act, n) : k->ref(w, act, n);
}

float gemm_dot_ref(GgmlType type, const void* w, const void* act, int64_t n) {
    const GemmKernel* k = find_gemm(type);
    QL_ASSERT(k != nullptr);
    return k->ref(w, act, n);
}

namespace {

bool half_finite(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return (h & 0x7C00) != 0x7C00;
}

}  // namespace

std::vector<size_t> half_scale_offsets(GgmlType type) {
    switch (type) {
        case GgmlType::Q4_0:
        case GgmlType::Q5_0:
        case GgmlType::Q8_0:
        case GgmlType::IQ4_NL:
        case GgmlType::IQ4_XS:
        case GgmlType::IQ2_XXS:
        case GgmlType::IQ2_XS:
        case GgmlType::IQ2_S:
        case GgmlType::IQ3_XXS:
        case GgmlType::IQ3_S:
        case GgmlType::IQ1_S:
            return {0};
        case GgmlType::Q4_1:
        case GgmlType::Q5_1:
        case GgmlType::Q4_K:
        case GgmlType::Q5_K:
            return {0, 2};
        case GgmlType::Q2_K:
            return {offsetof(block_q2_K, d), offsetof(block_q2_K, dmin)};
        case GgmlType::Q3_K:
            return {offsetof(block_q3_K, d)};
        case GgmlType::Q6_K:
            return {offsetof(block_q6_K, d)};
        case GgmlType::TQ2_0:
            return {offsetof(block_tq2_0, d)};
        case GgmlType::TQ1_0:
            return {offsetof(block_tq1_0, d)};
        default:
            return {};
    }
}

bool row_finite(GgmlType type, const void* row, int64_t n) {
    const auto* p = static_cast<const uint8_t*>(row);
    if (type == GgmlType::F16 || type == GgmlType::BF16) {
        for (int64_t i = 0; i < n; ++i) {
            uint16_t h;
            std::memcpy(&h, p + 2 * i, 2);
            const uint16_t exp = type == GgmlType::F16 ? 0x7C00 : 0x7F80;
            if ((h & exp) == exp) return false;
        }
        return true;
    }
    static thread_local std::vector<float> values;
    const std::vector<size_t> offsets = half_scale_offsets(type);
    if (offsets.empty() || type == GgmlType::F32) {
        values.resize(static_cast<size_t>(n));
        dequantize(type, row, values.data(), 1, n);
        for (float v : values)
            if (!std::isfinite(v)) return false;
        return true;
    }
    const GgmlTypeInfo& info = ggml_type_info(type);
    for (int64_t b = 0; b < n / info.block_size; ++b)
        for (size_t off : offsets)
            if (!half_finite(p + b * info.bytes_per_block + off)) return false;
    return true;
}

QuantizedRows& thread_rows() {
    thread_local QuantizedRows rows;  // reused: no allocation once inputs stop growing
    return rows;
}

void quantize_rows(GgmlType type, const float* in, int64_t N, int64_t IN, QuantizedRows& rows) {
    rows.act = act_type(type);
    rows.rows = N;
    rows.cols = IN;
    rows.row_size = act_row_size(type, IN);
    rows.data.resize(static_cast<size_t>(N) * rows.row_size);
    uint8_t* data = rows.data.data();
    const size_t row_size = rows.row_size;
    parallel_for(
        static_cast<size_t>(N),
        [&](size_t begin, size_t end) {
            for (size_t r = begin; r < end; ++r)
                quantize_act_row(type, in + r * IN, data + r * row_size, IN);
        },
        16);
}

void matmul(float* out, const QuantizedRows& in, GgmlType type, const void* weight,
            const float* bias, int64_t OUT) {
    const Kernel& k = get(type);
    QL_ASSERT(in.act == k.act && in.row_size == act_row_size(type, in.cols));
    const bool fast = k.avx2 && cpu_has_avx2_fma();
    detail::DotFn fn = fast ? k.avx2 : k.ref;
    detail::Dot4Fn fn4 = fast ? k.avx2_4 : nullptr;
    if (const Avx512Kernel* wide = avx512_kernel(type)) fn = wide->one, fn4 = wide->four;
    const int64_t N = in.rows, IN = in.cols;
    if (N >= 2 && gemm_order(type, IN, OUT)) {  // ggml hands a prompt to llamafile's tinyBLAS
        const GemmKernel& g = *find_gemm(type);
        const bool gemm_fast = g.avx2 && cpu_has_avx2_fma();
        fn = gemm_fast ? g.avx2 : g.ref;
        fn4 = gemm_fast ? g.avx2_4 : nullptr;
    }
    const size_t act_size = in.row_size, w_size = ggml_row_size(type, IN);
    const uint8_t* act = in.data.data();
    const auto* w = static_cast<const uint8_t*>(weight);
    // A tile is 16 output features × every input row, taken 64 rows at a time so the
    // tile's weight rows stay in L1 while the rows stream from L2.
    constexpr int64_t kRowTile = 16, kInputTile = 64;
    const int64_t tiles = (OUT + kRowTile - 1) / kRowTile;
    std::atomic<int64_t> next{0};
    const auto run_tile = [&](int64_t t) {
        const int64_t o_begin = t * kRowTile, o_end = std::min(OUT, o_begin + kRowTile);
        float four[4];
        for (int64_t n0 = 0; n0 < N; n0 += kInputTile) {
            const int64_t n1 = std::min(N, n0 + kInputTile);
            for (int64_t o = o_begin; o < o_end; ++o) {
                const uint8_t* row = w + o * w_size;
                const float b = bias ? bias[o] : 0.0f;
                int64_t r = n0;
                if (fn4) {
                    for (; r + 4 <= n1; r += 4) {
                        fn4(row, act + r * act_size, act_size, IN, four);
                        for (int i = 0; i < 4; ++i)
                            out[(r + i) * OUT + o] = bias ? four[i] + b : four[i];
                    }
                }
                for (; r < n1; ++r) {
                    const float v = fn(row, act + r * act_size, IN);
                    out[r * OUT + o] = bias ? v + b : v;
                }
            }
        }
    };
    // One task per thread, each taking tiles from a shared counter until none is left.
    parallel_for(static_cast<size_t>(std::min<int64_t>(num_threads(), tiles)), [&](size_t, size_t) {
        for (int64_t t; (t = next.fetch_add(1)) < tiles;) run_tile(t);
    });
}

void matmul(float* out, const float* in, GgmlType type, const void* weight, const float* bias,
            int64_t N, int64_t IN, int64_t OUT) {
    QuantizedRows& rows = thread_rows();
    quantize_rows(type, in, N, IN, rows);
    matmul(out, rows, type, weight, bias, OUT);
}

}  // namespace quantlens::vec_dot
