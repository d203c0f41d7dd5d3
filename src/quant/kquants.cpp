// K-quants Q2_K, Q3_K, Q4_K, Q5_K, Q6_K: 256-weight super-blocks whose 16- or 32-weight
// sub-blocks carry their own scale (and min), themselves quantized against one f16 super
// scale. Reference quantizers and dequantizers reproducing ggml's bytes exactly.
//
// Without importance: ggml's `quantize_row_*_ref` (sub-block fits weighted by |x| or x²,
// sub-block scales rounded linearly against the largest). With importance: ggml's
// `quantize_row_*_impl` (sub-block weights imatrix_j * sqrt(sigma² + x_j²), sub-block scales
// fitted by make_qp_quants / make_qx_quants weighted by each sub-block's total weight).
// Both then requantize every weight against the final rounded scales.
#include <cmath>
#include <cstring>

#include "core/half.h"
#include "quant/block_rows.h"
#include "quant/blocks.h"
#include "quant/kernels.h"
#include "quant/scale_search.h"

namespace quantlens::kernels {
namespace {

using namespace blocks;
using namespace detail;

inline int clamp_int(int v, int lo, int hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

float block_sum_x2(const float* x) {
    float s = 0;
    for (int l = 0; l < QK_K; ++l) s += x[l] * x[l];
    return s;
}

// 2-bit levels of 256 weights: byte l of each 32-byte group holds weights l, l+32, l+64, l+96.
// Imatrix weights of one sub-block of n weights (scale_search.h); returns their sum, the
// importance of the sub-block's scale and min when those are quantized in turn.
float sub_block_weights(const float* x, const float* qw, float sigma2, int n, float* weight) {
    imatrix_weights(x, qw, sigma2, n, weight);
    float sum = 0;
    for (int l = 0; l < n; ++l) sum += weight[l];
    return sum;
}

void pack_2bit(const uint8_t* L, uint8_t* qs) {
    for (int j = 0; j < QK_K; j += 128)
        for (int l = 0; l < 32; ++l)
            qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) |
                                                 (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

// ================================ Q2_K ================================

// Requantizes 16-weight sub-blocks against the stored scales (both paths end this way).
void q2_K_requantize(const float* x, const block_q2_K& y, uint8_t* L) {
    const float dall = f16_to_f32(y.d);
    const float dmin = f16_to_f32(y.dmin);
    for (int j = 0; j < QK_K / 16; ++j) {
        const float d = dall * (y.scales[j] & 0xF);
        if (d == 0) continue;
        const float dm = dmin * (y.scales[j] >> 4);
        for (int ii = 0; ii < 16; ++ii)
            L[16 * j + ii] =
                static_cast<uint8_t>(clamp_int(nearest_int((x[16 * j + ii] + dm) / d), 0, 3));
    }
}

void q2_K_block_ref(const float* x, block_q2_K& y) {
    uint8_t L[QK_K];
    uint8_t Laux[16];
    float weights[16];
    float mins[QK_K / 16];
    float scales[QK_K / 16];
    const float q4scale = 15.f;

    float max_scale = 0;  // the min is subtracted, so scales are never negative
    float max_min = 0;
    for (int j = 0; j < QK_K / 16; ++j) {
        for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
        scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f,
                                     0.1f, 15, true);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    if (max_scale > 0) {
        const float iscale = q4scale / max_scale;
        for (int j = 0; j < QK_K / 16; ++j)
            y.scales[j] = static_cast<uint8_t>(nearest_int(iscale * scales[j]));
        y.d = f32_to_f16(max_scale / q4scale);
    } else {
        for (int j = 0; j < QK_K / 16; ++j) y.scales[j] = 0;
        y.d = f32_to_f16(0.f);
    }
    if (max_min > 0) {
        const float iscale = q4scale / max_min;
        for (int j = 0; j < QK_K / 16; ++j)
            y.scales[j] |= static_cast<uint8_t>(nearest_int(iscale * mins[j]) << 4);
        y.dmin = f32_to_f16(max_min / q4scale);
    } else {
        y.dmin = f32_to_f16(0.f);
    }
    q2_K_requantize(x, y, L);
    pack_2bit(L, y.qs);
}

void q2_K_block_imat(const float* x, const float* qw, block_q2_K& y) {
    uint8_t L[QK_K];
    uint8_t Laux[16];
    float mins[QK_K / 16];
    float scales[QK_K / 16];
    float sw[QK_K / 16];
    float weight[16];
    uint8_t Ls[QK_K / 16], Lm[QK_K / 16];

    const float sigma2 = block_sum_x2(x) / QK_K;
    for (int j = 0; j < QK_K / 16; ++j) {
        sw[j] = sub_block_weights(x + 16 * j, qw + 16 * j, sigma2, 16, weight);
        scales[j] = make_qkx3_quants(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux, -0.9f,
                                     0.05f, 36, false);
    }
    const float dm = make_qp_quants(QK_K / 16, 15, scales, Ls, sw);
    const float mm = make_qp_quants(QK_K / 16, 15, mins, Lm, sw);
    y.d = f32_to_f16(dm);
    y.dmin = f32_to_f16(mm);
    for (int j = 0; j < QK_K / 16; ++j) y.scales[j] = static_cast<uint8_t>(Ls[j] | (Lm[j] << 4));
    q2_K_requantize(x, y, L);
    pack_2bit(L, y.qs);
}

// ================================ Q3_K ================================

// 16 six-bit scales (stored +32): low nibbles in bytes 0-7, high 2 bits in bytes 8-11.
void q3_K_pack_scale(int j, int l, uint8_t* scales) {
    if (j < 8) {
        scales[j] = static_cast<uint8_t>(l & 0xF);
    } else {
        scales[j - 8] |= static_cast<uint8_t>((l & 0xF) << 4);
    }
    l >>= 4;
    scales[j % 4 + 8] |= static_cast<uint8_t>(l << (2 * (j / 4)));
}

int q3_K_unpack_scale(int j, const uint8_t* scales) {
    const int low = j < 8 ? scales[j] & 0xF : scales[j - 8] >> 4;
    return (low | (((scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}

// Requantizes against the stored scales and writes hmask (bit k of byte m = high bit of
// weight 32k + m) and the low 2 bits.
void q3_K_finish(const float* x, block_q3_K& y, int8_t* L) {
    const float dall = f16_to_f32(y.d);
    for (int j = 0; j < QK_K / 16; ++j) {
        const float d = dall * static_cast<int8_t>(q3_K_unpack_scale(j, y.scales));
        if (d == 0) continue;
        for (int ii = 0; ii < 16; ++ii)
            L[16 * j + ii] =
                static_cast<int8_t>(clamp_int(nearest_int(x[16 * j + ii] / d), -4, 3) + 4);
    }
    std::memset(y.hmask, 0, sizeof y.hmask);
    int m = 0;
    uint8_t hm = 1;
    for (int j = 0; j < QK_K; ++j) {
        if (L[j] > 3) {
            y.hmask[m] |= hm;
            L[j] -= 4;
        }
        if (++m == QK_K / 8) {
            m = 0;
            hm = static_cast<uint8_t>(hm << 1);
        }
    }
    pack_2bit(reinterpret_cast<const uint8_t*>(L), y.qs);
}

void q3_K_block_ref(const float* x, block_q3_K& y) {
    int8_t L[QK_K];
    float scales[QK_K / 16];
    float max_scale = 0;
    float amax = 0;
    for (int j = 0; j < QK_K / 16; ++j) {
        scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j, true);
        const float scale = std::fabs(scales[j]);
        if (scale > amax) {
            amax = scale;
            max_scale = scales[j];
        }
    }
    std::memset(y.scales, 0, sizeof y.scales);
    if (max_scale != 0) {
        const float iscale = -32.f / max_scale;
        for (int j = 0; j < QK_K / 16; ++j) {
            int8_t l = static_cast<int8_t>(nearest_int(iscale * scales[j]));
            l = static_cast<int8_t>(clamp_int(l, -32, 31) + 32);
            q3_K_pack_scale(j, l, y.scales);
        }
        y.d = f32_to_f16(1 / iscale);
    } else {
        y.d = f32_to_f16(0.f);
    }
    q3_K_finish(x, y, L);
}

void q3_K_block_imat(const float* x, const float* qw, block_q3_K& y) {
    int8_t L[QK_K];
    float scales[QK_K / 16];
    float weight[16];
    float sw[QK_K / 16];
    int8_t Ls[QK_K / 16];

    const float sigma2 = 2 * block_sum_x2(x) / QK_K;
    for (int j = 0; j < QK_K / 16; ++j) {
        sw[j] = sub_block_weights(x + 16 * j, qw + 16 * j, sigma2, 16, weight);
        scales[j] = make_qx_quants(16, 4, x + 16 * j, L + 16 * j, 1, weight);
    }
    std::memset(y.scales, 0, sizeof y.scales);
    const float d_block = make_qx_quants(QK_K / 16, 32, scales, Ls, 1, sw);
    for (int j = 0; j < QK_K / 16; ++j) q3_K_pack_scale(j, Ls[j], y.scales);
    y.d = f32_to_f16(d_block);
    q3_K_finish(x, y, L);
}

// ============================ Q4_K and Q5_K ============================

// Sub-block fits of the `_ref` path: weights av_x + |x|, av_x = RMS of the sub-block.
template <int NMAX>
void qk_fit_ref(const float* x, float* scales, float* mins, uint8_t* L, float rmin, float rdelta,
                int nstep, float& max_scale, float& max_min) {
    uint8_t Laux[32];
    float weights[32];
    max_scale = 0;
    max_min = 0;
    for (int j = 0; j < QK_K / 32; ++j) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = std::sqrt(sum_x2 / 32);
        for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, NMAX, x + 32 * j, weights, L + 32 * j, &mins[j], Laux,
                                     rmin, rdelta, nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
}

// Rounds the 8 scales and mins linearly against their maxima into 6 bits each.
void qk_store_scales_ref(const float* scales, const float* mins, float max_scale, float max_min,
                         uint8_t* packed, half& d, half& dmin) {
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < QK_K / 32; ++j) {
        uint8_t ls = static_cast<uint8_t>(nearest_int(inv_scale * scales[j]));
        uint8_t lm = static_cast<uint8_t>(nearest_int(inv_min * mins[j]));
        ls = ls < 63 ? ls : 63;
        lm = lm < 63 ? lm : 63;
        set_scale_min_k4(j, ls, lm, packed);
    }
    d = f32_to_f16(max_scale / 63.f);
    dmin = f32_to_f16(max_min / 63.f);
}

// Sub-block fits of the importance path, then the scales and mins fitted by make_qp_quants.
template <int NMAX>
void qk_fit_imat(const float* x, const float* qw, uint8_t* L, uint8_t* packed, half& d,
                 half& dmin) {
    uint8_t Laux[32];
    uint8_t Ls[QK_K / 32];
    uint8_t Lm[QK_K / 32];
    float weights[32];
    float sw[QK_K / 32];
    float mins[QK_K / 32];
    float scales[QK_K / 32];

    const float sigma2 = 2 * block_sum_x2(x) / QK_K;
    for (int j = 0; j < QK_K / 32; ++j) {
        sw[j] = sub_block_weights(x + 32 * j, qw + 32 * j, sigma2, 32, weights);
        scales[j] = make_qkx3_quants(32, NMAX, x + 32 * j, weights, L + 32 * j, &mins[j], Laux,
                                     -0.9f, 0.05f, 36, false);
    }
    const float d_block = make_qp_quants(QK_K / 32, 63, scales, Ls, sw);
    const float m_block = make_qp_quants(QK_K / 32, 63, mins, Lm, sw);
    for (int j = 0; j < QK_K / 32; ++j) {
        const uint8_t ls = Ls[j] < 63 ? Ls[j] : 63;
        const uint8_t lm = Lm[j] < 63 ? Lm[j] : 63;
        set_scale_min_k4(j, ls, lm, packed);
    }
    d = f32_to_f16(d_block);
    dmin = f32_to_f16(m_block);
}

template <int NMAX>
void qk_requantize(const float* x, const uint8_t* packed, half d_bits, half dmin_bits, uint8_t* L) {
    const float dall = f16_to_f32(d_bits);
    const float dmin = f16_to_f32(dmin_bits);
    for (int j = 0; j < QK_K / 32; ++j) {
        const auto [d, dm] = step_min_k4(j, packed, dall, dmin);
        if (d == 0) continue;
        for (int ii = 0; ii < 32; ++ii)
            L[32 * j + ii] =
                static_cast<uint8_t>(clamp_int(nearest_int((x[32 * j + ii] + dm) / d), 0, NMAX));
    }
}

void q4_K_pack(const uint8_t* L, block_q4_K& y) {
    uint8_t* q = y.qs;
    for (int j = 0; j < QK_K; j += 64, q += 32)
        for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
}

void q5_K_pack(const uint8_t* L, block_q5_K& y) {
    uint8_t* ql = y.qs;
    std::memset(y.qh, 0, sizeof y.qh);
    uint8_t m1 = 1, m2 = 2;
    for (int n = 0; n < QK_K; n += 64, ql += 32) {
        for (int j = 0; j < 32; ++j) {
            int l1 = L[n + j];
            if (l1 > 15) {
                l1 -= 16;
                y.qh[j] |= m1;
            }
            int l2 = L[n + j + 32];
            if (l2 > 15) {
                l2 -= 16;
                y.qh[j] |= m2;
            }
            ql[j] = static_cast<uint8_t>(l1 | (l2 << 4));
        }
        m1 = static_cast<uint8_t>(m1 << 2);
        m2 = static_cast<uint8_t>(m2 << 2);
    }
}

// Mirrors ggml's quantize_row_q4_K_ref / q5_K_ref and their _impl (importance) twins: 8
// sub-blocks of 32 with a 6-bit scale and min each, levels 0..nmax; the reference path's
// search grid (rmin, 0.1 steps, nstep) is the one ggml uses for that type.
template <int nmax, typename Block>
void qk_block(const float* x, const float* qw, Block& y, float rmin, int nstep,
              void (*pack)(const uint8_t*, Block&)) {
    uint8_t L[QK_K];
    if (qw) {
        qk_fit_imat<nmax>(x, qw, L, y.scales, y.d, y.dmin);
    } else {
        float scales[QK_K / 32], mins[QK_K / 32], max_scale, max_min;
        qk_fit_ref<nmax>(x, scales, mins, L, rmin, 0.1f, nstep, max_scale, max_min);
        qk_store_scales_ref(scales, mins, max_scale, max_min, y.scales, y.d, y.dmin);
    }
    qk_requantize<nmax>(x, y.scales, y.d, y.dmin, L);
    pack(L, y);
}

void q4_K_block(const float* x, const float* qw, block_q4_K& y) {
    qk_block<15>(x, qw, y, -1.f, 20, q4_K_pack);
}

void q5_K_block(const float* x, const float* qw, block_q5_K& y) {
    qk_block<31>(x, qw, y, -0.5f, 15, q5_K_pack);
}

// ================================ Q6_K ================================

// The `_ref` path weights by x²; the importance path uses the imatrix directly.
void q6_K_block(const float* x, const float* qw, block_q6_K& y) {
    int8_t L[QK_K];
    float scales[QK_K / 16];
    float max_scale = 0;
    float max_abs_scale = 0;
    for (int ib = 0; ib < QK_K / 16; ++ib) {
        const float scale =
            make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, 1, qw ? qw + 16 * ib : nullptr);
        scales[ib] = scale;
        const float abs_scale = std::fabs(scale);
        if (abs_scale > max_abs_scale) {
            max_abs_scale = abs_scale;
            max_scale = scale;
        }
    }
    if (max_abs_scale < kGroupMaxEps) {
        std::memset(&y, 0, sizeof y);
        y.d = f32_to_f16(0.f);
        return;
    }
    const float iscale = -128.f / max_scale;
    y.d = f32_to_f16(1 / iscale);
    for (int ib = 0; ib < QK_K / 16; ++ib) {
        const int s = nearest_int(iscale * scales[ib]);
        y.scales[ib] = static_cast<int8_t>(s < 127 ? s : 127);
    }
    const float dall = f16_to_f32(y.d);
    for (int j = 0; j < QK_K / 16; ++j) {
        const float d = dall * y.scales[j];
        if (d == 0) continue;
        for (int ii = 0; ii < 16; ++ii)
            L[16 * j + ii] =
                static_cast<int8_t>(clamp_int(nearest_int(x[16 * j + ii] / d), -32, 31) + 32);
    }
    uint8_t* ql = y.ql;
    uint8_t* qh = y.qh;
    for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32) {
        for (int l = 0; l < 32; ++l) {
            const uint8_t q1 = L[j + l] & 0xF;
            const uint8_t q2 = L[j + l + 32] & 0xF;
            const uint8_t q3 = L[j + l + 64] & 0xF;
            const uint8_t q4 = L[j + l + 96] & 0xF;
            ql[l] = static_cast<uint8_t>(q1 | (q3 << 4));
            ql[l + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
            qh[l] = static_cast<uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                                         ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
        }
    }
}

// With an imatrix ggml's quantize_row_*_impl, without it quantize_row_*_ref.
void q2_K_block(const float* x, const float* qw, block_q2_K& y) {
    if (qw)
        q2_K_block_imat(x, qw, y);
    else
        q2_K_block_ref(x, y);
}
void q3_K_block(const float* x, const float* qw, block_q3_K& y) {
    if (qw)
        q3_K_block_imat(x, qw, y);
    else
        q3_K_block_ref(x, y);
}

}  // namespace

// ---- kernels.h entry points ----

QL_QUANTIZE_ROWS_BY_BLOCK(q2_K, block_q2_K, QK_K, q2_K_block)
QL_QUANTIZE_ROWS_BY_BLOCK(q3_K, block_q3_K, QK_K, q3_K_block)
QL_QUANTIZE_ROWS_BY_BLOCK(q4_K, block_q4_K, QK_K, q4_K_block)
QL_QUANTIZE_ROWS_BY_BLOCK(q5_K, block_q5_K, QK_K, q5_K_block)
QL_QUANTIZE_ROWS_BY_BLOCK(q6_K, block_q6_K, QK_K, q6_K_block)

void dequantize_row_q2_K(const void* src, float* y, int64_t n) {
    const auto* x = static_cast<const block_q2_K*>(src);
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = f16_to_f32(x[i].d);
        const float min = f16_to_f32(x[i].dmin);
        const uint8_t* q = x[i].qs;
        int is = 0;
        for (int n0 = 0; n0 < QK_K; n0 += 128, q += 32) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int half_ = 0; half_ < 2; ++half_) {
                    const uint8_t sc = x[i].scales[is++];
                    const float dl = d * (sc & 0xF);
                    const float ml = min * (sc >> 4);
                    for (int l = 0; l < 16; ++l)
                        *y++ = dl * static_cast<float>((q[l + 16 * half_] >> shift) & 3) - ml;
                }
            }
        }
    }
}

// Mirrors ggml's dequantize_row_q3_K step for step, as the other dequantizers here mirror
// theirs (their shared loop shape is ggml's, kept so each reads against its original).
void dequantize_row_q3_K(const void* src, float* y, int64_t n) {
    const auto* x = static_cast<const block_q3_K*>(src);
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d_all = f16_to_f32(x[i].d);
        const uint8_t* q = x[i].qs;
        const uint8_t* hm = x[i].hmask;
        uint8_t m = 1;
        int is = 0;
        for (int n0 = 0; n0 < QK_K; n0 += 128, q += 32) {
            for (int shift = 0; shift < 8; shift += 2, m = static_cast<uint8_t>(m << 1)) {
                for (int half_ = 0; half_ < 2; ++half_) {
                    const float dl = d_all * q3_K_unpack_scale(is++, x[i].scales);
                    for (int l = 16 * half_; l < 16 * half_ + 16; ++l) {
                        const int v = ((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4);
                        *y++ = dl * static_cast<float>(v);
                    }
                }
            }
        }
    }
}

void dequantize_row_q4_K(const void* src, float* y, int64_t n) {
    const auto* x = static_cast<const block_q4_K*>(src);
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const uint8_t* q = x[i].qs;
        const float d = f16_to_f32(x[i].d);
        const float min = f16_to_f32(x[i].dmin);
        for (int j = 0, is = 0; j < QK_K; j += 64, q += 32, is += 2) {
            const auto [d1, m1] = step_min_k4(is, x[i].scales, d, min);
            const auto [d2, m2] = step_min_k4(is + 1, x[i].scales, d, min);
            for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
            for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
        }
    }
}

void dequantize_row_q5_K(const void* src, float* y, int64_t n) {
    const auto* x = static_cast<const block_q5_K*>(src);
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const uint8_t* ql = x[i].qs;
        const uint8_t* qh = x[i].qh;
        const float d = f16_to_f32(x[i].d);
        const float min = f16_to_f32(x[i].dmin);
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0, is = 0; j < QK_K; j += 64, ql += 32, is += 2) {
            const auto [d1, m1] = step_min_k4(is, x[i].scales, d, min);
            const auto [d2, m2] = step_min_k4(is + 1, x[i].scales, d, min);
            for (int l = 0; l < 32; ++l)
                *y++ = d1 * static_cast<float>((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; ++l)
                *y++ = d2 * static_cast<float>((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
            u1 = static_cast<uint8_t>(u1 << 2);
            u2 = static_cast<uint8_t>(u2 << 2);
        }
    }
}

// Mirrors ggml's dequantize_row_q6_K.
void dequantize_row_q6_K(const void* src, float* y, int64_t n) {
    const auto* x = static_cast<const block_q6_K*>(src);
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = f16_to_f32(x[i].d);
        const uint8_t* ql = x[i].ql;
        const uint8_t* qh = x[i].qh;
        const int8_t* sc = x[i].scales;
        for (int n0 = 0; n0 < QK_K; n0 += 128, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; ++l) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * sc[is] * static_cast<float>(q1);
                y[l + 32] = d * sc[is + 2] * static_cast<float>(q2);
                y[l + 64] = d * sc[is + 4] * static_cast<float>(q3);
                y[l + 96] = d * sc[is + 6] * static_cast<float>(q4);
            }
        }
    }
}

}  // namespace quantlens::kernels
