// Legacy 32-weight block formats Q4_0, Q4_1, Q5_0, Q5_1, Q8_0: reference quantizers and
// dequantizers reproducing ggml's bytes exactly.
//
// Without importance the scale comes from the block's extremes (ggml's `_ref` path). With
// importance, Q4_0/Q5_0 fit a symmetric scale and Q4_1/Q5_1 a scale and min by weighted
// least squares, weights = imatrix_j * sqrt(sigma² + x_j²) with sigma² the row's mean
// square (ggml's `quantize_row_*_impl`). Q8_0 ignores importance, as ggml does.
#include <cmath>
#include <cstring>
#include <limits>

#include "core/half.h"
#include "quant/blocks.h"
#include "quant/kernels.h"
#include "quant/scale_search.h"

namespace quantlens::kernels {
namespace {

using namespace blocks;
using detail::imatrix_weights;
using detail::make_qkx3_quants;
using detail::make_qx_quants;
using detail::signed_extreme;

inline uint8_t min_u8(int a, int b) {
    return static_cast<uint8_t>(a < b ? a : b);
}

// ---- block reference quantizers (no importance) ----

// Symmetric: the signed extreme maps to level -2^(bits-1); returns d and the 1/d used.
inline void signed_extreme_scale(const float* x, int n, float levels, float& d, float& id) {
    d = signed_extreme(x, n).value / -levels;
    id = d != 0 ? 1.0f / d : 0.0f;
}

void q4_0_block(const float* x, block_q4_0& y) {
    float d, id;
    signed_extreme_scale(x, QK4_0, 8, d, id);
    y.d = f32_to_f16(d);
    for (int j = 0; j < QK4_0 / 2; ++j) {
        const float x0 = x[j] * id;
        const float x1 = x[QK4_0 / 2 + j] * id;
        const uint8_t q0 = min_u8(15, static_cast<int8_t>(x0 + 8.5f));
        const uint8_t q1 = min_u8(15, static_cast<int8_t>(x1 + 8.5f));
        y.qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
}

// Asymmetric: [min, max] spread over 2^bits - 1 steps.
inline void min_max_scale(const float* x, int n, float steps, float& min, float& d, float& id) {
    min = std::numeric_limits<float>::max();
    float max = -std::numeric_limits<float>::max();
    for (int j = 0; j < n; ++j) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
    d = (max - min) / steps;
    id = d != 0 ? 1.0f / d : 0.0f;
}

void q4_1_block(const float* x, block_q4_1& y) {
    float min, d, id;
    min_max_scale(x, QK4_1, 15, min, d, id);
    y.d = f32_to_f16(d);
    y.m = f32_to_f16(min);
    for (int j = 0; j < QK4_1 / 2; ++j) {
        const float x0 = (x[j] - min) * id;
        const float x1 = (x[QK4_1 / 2 + j] - min) * id;
        const uint8_t q0 = min_u8(15, static_cast<int8_t>(x0 + 0.5f));
        const uint8_t q1 = min_u8(15, static_cast<int8_t>(x1 + 0.5f));
        y.qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
}

// Packs 32 five-bit levels: low nibbles in qs (j | j+16 << 4), fifth bits in qh.
template <typename Level>
void pack5(const Level* L, uint8_t* qs, uint8_t* qh_bytes) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
        const uint8_t l0 = static_cast<uint8_t>(L[j]);
        const uint8_t l1 = static_cast<uint8_t>(L[j + 16]);
        qs[j] = static_cast<uint8_t>((l0 & 0x0F) | ((l1 & 0x0F) << 4));
        qh |= ((l0 & 0x10u) >> 4) << j;
        qh |= ((l1 & 0x10u) >> 4) << (j + 16);
    }
    std::memcpy(qh_bytes, &qh, sizeof qh);
}

void q5_0_block(const float* x, block_q5_0& y) {
    float d, id;
    signed_extreme_scale(x, QK5_0, 16, d, id);
    y.d = f32_to_f16(d);
    uint8_t L[QK5_0];
    for (int j = 0; j < QK5_0; ++j) L[j] = min_u8(31, static_cast<int8_t>(x[j] * id + 16.5f));
    pack5(L, y.qs, y.qh);
}

void q5_1_block(const float* x, block_q5_1& y) {
    float min, d, id;
    min_max_scale(x, QK5_1, 31, min, d, id);
    y.d = f32_to_f16(d);
    y.m = f32_to_f16(min);
    uint8_t L[QK5_1];
    for (int j = 0; j < QK5_1; ++j) L[j] = static_cast<uint8_t>((x[j] - min) * id + 0.5f);
    pack5(L, y.qs, y.qh);
}

void q8_0_block(const float* x, block_q8_0& y) {
    float amax = 0.0f;
    for (int j = 0; j < QK8_0; ++j) amax = amax > std::fabs(x[j]) ? amax : std::fabs(x[j]);
    const float d = amax / 127;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y.d = f32_to_f16(d);
    for (int j = 0; j < QK8_0; ++j) y.qs[j] = static_cast<int8_t>(std::round(x[j] * id));
}

// ---- importance-weighted rows ----

// sigma² = mean square of the whole row; per-weight importance = qw * sqrt(sigma² + x²).
float row_sigma2(const float* x, int64_t n) {
    float sum_x2 = 0;
    for (int64_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
    return sum_x2 / n;
}

template <typename Block, typename BlockFn, typename RowImatFn>
void quantize_rows(const float* src, void* dst, int64_t n_rows, int64_t n_per_row,
                   const float* importance, BlockFn block_fn, RowImatFn row_imat_fn) {
    const int64_t nb = n_per_row / 32;
    auto* y = static_cast<Block*>(dst);
    for (int64_t r = 0; r < n_rows; ++r) {
        const float* x = src + r * n_per_row;
        Block* yr = y + r * nb;
        if (importance) {
            row_imat_fn(x, yr, n_per_row, importance);
        } else {
            for (int64_t b = 0; b < nb; ++b) block_fn(x + b * 32, yr[b]);
        }
    }
}

// Packs 32 four-bit levels: j | j+16 << 4 in qs.
template <typename Level>
void pack4(const Level* L, uint8_t* qs) {
    for (int j = 0; j < 16; ++j) qs[j] = static_cast<uint8_t>(L[j] | (L[j + 16] << 4));
}

template <typename Block>
void pack_levels(const uint8_t* L, Block& y) {
    if constexpr (requires { y.qh; })
        pack5(L, y.qs, y.qh);
    else
        pack4(L, y.qs);
}

// Mirrors ggml's quantize_row_q4_0_impl / q5_0_impl: a symmetric scale per 32-block by
// weighted least squares (make_qx_quants over `nmax` levels each side).
template <typename Block>
void symmetric_row_imat(const float* x, Block* y, int64_t n, const float* qw, int nmax) {
    const float sigma2 = row_sigma2(x, n);
    float weight[32];
    int8_t L[32];
    for (int64_t b = 0; b < n / 32; ++b) {
        imatrix_weights(x + 32 * b, qw + 32 * b, sigma2, 32, weight);
        const float d = make_qx_quants(32, nmax, x + 32 * b, L, 1, weight);
        y[b].d = f32_to_f16(d);
        uint8_t levels[32];
        for (int j = 0; j < 32; ++j) levels[j] = static_cast<uint8_t>(L[j]);
        pack_levels(levels, y[b]);
    }
}

// Mirrors ggml's quantize_row_q4_1_impl / q5_1_impl: a scale and min per 32-block by
// weighted least squares (make_qkx3_quants with ggml's search grid, nmax + 1 levels).
template <typename Block>
void affine_row_imat(const float* x, Block* y, int64_t n, const float* qw, int nmax) {
    const float sigma2 = row_sigma2(x, n);
    float weight[32];
    uint8_t L[32], Laux[32];
    for (int64_t b = 0; b < n / 32; ++b) {
        imatrix_weights(x + 32 * b, qw + 32 * b, sigma2, 32, weight);
        float min;
        const float d =
            make_qkx3_quants(32, nmax, x + 32 * b, weight, L, &min, Laux, -0.9f, 0.05f, 36, false);
        y[b].d = f32_to_f16(d);
        y[b].m = f32_to_f16(-min);
        pack_levels(L, y[b]);
    }
}

void q4_0_row_imat(const float* x, block_q4_0* y, int64_t n, const float* qw) {
    symmetric_row_imat(x, y, n, qw, 8);
}
void q4_1_row_imat(const float* x, block_q4_1* y, int64_t n, const float* qw) {
    affine_row_imat(x, y, n, qw, 15);
}
void q5_0_row_imat(const float* x, block_q5_0* y, int64_t n, const float* qw) {
    symmetric_row_imat(x, y, n, qw, 16);
}
void q5_1_row_imat(const float* x, block_q5_1* y, int64_t n, const float* qw) {
    affine_row_imat(x, y, n, qw, 31);
}

inline uint32_t load_qh(const uint8_t* qh) {
    uint32_t v;
    std::memcpy(&v, qh, sizeof v);
    return v;
}

}  // namespace

// ---- kernels.h entry points ----

// Each type's blocks by <t>_block, or its rows by <t>_row_imat with an imatrix.
#define QL_LEGACY_QUANTIZE_ROWS(t)                                                         \
    void quantize_rows_##t(const float* src, void* dst, int64_t n_rows, int64_t n_per_row, \
                           const float* importance) {                                      \
        quantize_rows<block_##t>(src, dst, n_rows, n_per_row, importance, t##_block,       \
                                 t##_row_imat);                                            \
    }
QL_LEGACY_QUANTIZE_ROWS(q4_0)
QL_LEGACY_QUANTIZE_ROWS(q4_1)
QL_LEGACY_QUANTIZE_ROWS(q5_0)
QL_LEGACY_QUANTIZE_ROWS(q5_1)
#undef QL_LEGACY_QUANTIZE_ROWS

void quantize_rows_q8_0(const float* src, void* dst, int64_t n_rows, int64_t n_per_row,
                        const float*) {
    auto* y = static_cast<block_q8_0*>(dst);
    const int64_t n_blocks = n_rows * (n_per_row / QK8_0);
    for (int64_t b = 0; b < n_blocks; ++b) q8_0_block(src + b * QK8_0, y[b]);
}

// The 32 levels of a Q4/Q5 block, as pack_levels stored them.
template <typename Block>
void unpack_levels(const Block& x, int* L) {
    uint32_t qh = 0;
    if constexpr (requires { x.qh; }) qh = load_qh(x.qh);
    for (int j = 0; j < 16; ++j) {
        L[j] = (x.qs[j] & 0x0F) | (((qh >> j) << 4) & 0x10);
        L[j + 16] = (x.qs[j] >> 4) | ((qh >> (j + 12)) & 0x10);
    }
}

// Symmetric blocks (Q4_0, Q5_0): (level - zero) · d.
template <typename Block>
void dequantize_symmetric(const void* src, float* y, int64_t n, int zero) {
    const auto* x = static_cast<const Block*>(src);
    int L[32];
    for (int64_t i = 0; i < n / 32; ++i, y += 32) {
        const float d = f16_to_f32(x[i].d);
        unpack_levels(x[i], L);
        for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(L[j] - zero) * d;
    }
}

// Affine blocks (Q4_1, Q5_1): level · d + m.
template <typename Block>
void dequantize_affine(const void* src, float* y, int64_t n) {
    const auto* x = static_cast<const Block*>(src);
    int L[32];
    for (int64_t i = 0; i < n / 32; ++i, y += 32) {
        const float d = f16_to_f32(x[i].d);
        const float m = f16_to_f32(x[i].m);
        unpack_levels(x[i], L);
        for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(L[j]) * d + m;
    }
}

void dequantize_row_q4_0(const void* src, float* y, int64_t n) {
    dequantize_symmetric<block_q4_0>(src, y, n, 8);
}
void dequantize_row_q4_1(const void* src, float* y, int64_t n) {
    dequantize_affine<block_q4_1>(src, y, n);
}
void dequantize_row_q5_0(const void* src, float* y, int64_t n) {
    dequantize_symmetric<block_q5_0>(src, y, n, 16);
}
void dequantize_row_q5_1(const void* src, float* y, int64_t n) {
    dequantize_affine<block_q5_1>(src, y, n);
}

void dequantize_row_q8_0(const void* src, float* y, int64_t n) {
    const auto* x = static_cast<const block_q8_0*>(src);
    for (int64_t i = 0; i < n / QK8_0; ++i, y += QK8_0) {
        const float d = f16_to_f32(x[i].d);
        for (int j = 0; j < QK8_0; ++j) y[j] = static_cast<float>(x[i].qs[j]) * d;
    }
}

}  // namespace quantlens::kernels
