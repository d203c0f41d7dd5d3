// IQ4_NL and IQ4_XS: 4-bit indices into ggml's non-linear value table (kvalues_iq4nl).
// IQ4_NL has one fp16 scale per 32 weights; IQ4_XS groups 8 of those blocks under one fp16
// super-scale with 6-bit sub-scales. Both search the block scale over 15 candidate ratios,
// scoring with importance weights (imatrix * sqrt(sigma^2 + x^2)) or x^2 without them,
// exactly as ggml's quantize_iq4_nl / quantize_iq4_xs do.
#include "quant/block_rows.h"
#include "quant/iq_common.h"
#include "quant/kernels.h"
#include "quant/tables_generated.h"

namespace quantlens::kernels {
namespace {

using namespace iq;
using blocks::block_iq4_nl;
using blocks::block_iq4_xs;
using blocks::QK4_NL;
using blocks::QK_K;

constexpr int kBlock = 32;
constexpr int kTries = 7;  // candidate scales: values[0] + itry for itry in [-7, 7]

// Output slots of one super-block; scales_h/scales_l are null for IQ4_NL.
struct Iq4Out {
    uint16_t* d;
    uint8_t* qs;
    uint16_t* scales_h;
    uint8_t* scales_l;
};

// One super-block of n weights (32 for IQ4_NL, 256 for IQ4_XS).
// Mirrors ggml's quantize_row_iq4_nl_impl (its scale search, like make_qx_quants').
void quantize_iq4_super(int n, const float* x, const float* qw, Iq4Out out) {
    const int8_t* values = tables::kvalues_iq4nl;
    float scales[QK_K / kBlock];
    float weight[kBlock];
    uint8_t L[QK_K];

    float sigma2 = 0;
    for (int j = 0; j < n; ++j) sigma2 += x[j] * x[j];
    sigma2 *= 2.f / n;

    std::memset(out.qs, 0, n / 2);
    *out.d = to_half(0.f);

    float max_scale = 0, amax_scale = 0;
    for (int ib = 0; ib < n / kBlock; ++ib) {
        const float* xb = x + ib * kBlock;
        uint8_t* Lb = L + ib * kBlock;
        if (qw) {
            const float* w = qw + ib * kBlock;
            imatrix_weights(xb, w, sigma2, kBlock, weight);
        } else {
            for (int j = 0; j < kBlock; ++j) weight[j] = xb[j] * xb[j];
        }
        const SignedExtreme extreme = signed_extreme(xb, kBlock);
        const float max = extreme.value;
        if (extreme.magnitude < kGroupMaxEps) {
            scales[ib] = 0;
            std::memset(Lb, 0, kBlock);
            continue;
        }
        float d = -max / values[0];
        float id = 1 / d;
        float sumqx = 0, sumq2 = 0;
        for (int j = 0; j < kBlock; ++j) {
            const int l = best_index_int8(16, values, id * xb[j]);
            Lb[j] = static_cast<uint8_t>(l);
            const float q = values[l];
            const float w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
        float best = d * sumqx;
        for (int itry = -kTries; itry <= kTries; ++itry) {
            id = (itry + values[0]) / max;
            sumqx = sumq2 = 0;
            for (int j = 0; j < kBlock; ++j) {
                const int l = best_index_int8(16, values, id * xb[j]);
                const float q = values[l];
                const float w = weight[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }
            improves_fit(sumqx, sumq2, best, d);
        }
        scales[ib] = d;
        const float abs_d = std::fabs(d);
        if (abs_d > amax_scale) {
            amax_scale = abs_d;
            max_scale = d;
        }
    }

    if (n / kBlock > 1) {
        // IQ4_XS: 6-bit signed sub-scales relative to d = -max_scale/32, weights re-picked
        // against the quantized sub-scale.
        *out.scales_h = 0;
        const float d = -max_scale / 32;
        *out.d = to_half(d);
        const float id = d ? 1 / d : 0.f;
        for (int ib = 0; ib < n / kBlock; ++ib) {
            int l = nearest_int(id * scales[ib]);
            l = std::max(-32, std::min(31, l));
            const float dl = d * l;
            const float idl = dl ? 1 / dl : 0.f;
            uint8_t* Lb = L + ib * kBlock;
            const float* xb = x + ib * kBlock;
            for (int j = 0; j < kBlock; ++j) Lb[j] = best_index_int8(16, values, idl * xb[j]);
            l += 32;
            const uint8_t l_l = l & 0xf;
            const uint8_t l_h = l >> 4;
            if (ib % 2 == 0) {
                out.scales_l[ib / 2] = l_l;
            } else {
                out.scales_l[ib / 2] |= (l_l << 4);
            }
            *out.scales_h |= (l_h << 2 * (ib % 8));
        }
    } else {
        *out.d = to_half(scales[0]);
        const float id = scales[0] ? 1 / scales[0] : 0;
        for (int j = 0; j < n; ++j) L[j] = best_index_int8(16, values, id * x[j]);
    }

    for (int i = 0; i < n / 32; ++i) {
        for (int j = 0; j < 16; ++j) {
            out.qs[16 * i + j] = L[32 * i + j] | (L[32 * i + 16 + j] << 4);
        }
    }
}

}  // namespace

// Mirrors ggml's quantize_iq4_nl.
QL_QUANTIZE_ROWS_BY_BLOCK(iq4_nl, block_iq4_nl, QK4_NL,
                          [](const float* x, const float* qw, block_iq4_nl& y) {
                              quantize_iq4_super(QK4_NL, x, qw, {&y.d, y.qs, nullptr, nullptr});
                          })

void dequantize_row_iq4_nl(const void* src, float* y, int64_t n) {
    const auto* x = static_cast<const block_iq4_nl*>(src);
    for (int64_t i = 0; i < n / QK4_NL; ++i, y += QK4_NL) {
        const float d = from_half(x[i].d);
        for (int j = 0; j < QK4_NL / 2; ++j) {
            y[j] = d * tables::kvalues_iq4nl[x[i].qs[j] & 0xf];
            y[j + QK4_NL / 2] = d * tables::kvalues_iq4nl[x[i].qs[j] >> 4];
        }
    }
}

// Mirrors ggml's quantize_iq4_xs.
QL_QUANTIZE_ROWS_BY_BLOCK(
    iq4_xs, block_iq4_xs, QK_K, [](const float* x, const float* qw, block_iq4_xs& y) {
        quantize_iq4_super(QK_K, x, qw, {&y.d, y.qs, &y.scales_h, y.scales_l});
    })

void dequantize_row_iq4_xs(const void* src, float* y, int64_t n) {
    const auto* x = static_cast<const block_iq4_xs*>(src);
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const uint8_t* qs = x[i].qs;
        const float d = from_half(x[i].d);
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const int ls = ((x[i].scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) |
                           (((x[i].scales_h >> 2 * ib) & 3) << 4);
            const float dl = d * (ls - 32);
            for (int j = 0; j < 16; ++j) {
                y[j] = dl * tables::kvalues_iq4nl[qs[j] & 0xf];
                y[j + 16] = dl * tables::kvalues_iq4nl[qs[j] >> 4];
            }
            y += 32;
            qs += 16;
        }
    }
}

}  // namespace quantlens::kernels
