// IQ2_XXS, IQ2_XS and IQ2_S: groups of 8 weights snapped to a 256-, 512- or 1024-point
// lattice with 3 magnitude levels (ggml's iq2xxs/iq2xs/iq2s grids), signs stored apart, and
// 4-bit sub-block scales under one fp16 super-scale. Mirrors ggml's quantize_row_iq2_*_impl:
// IQ2_XXS and IQ2_XS require importance weights and store 7 sign bits per 8 weights (the
// 8th is implied by parity); IQ2_S stores all 8 and falls back to x^2 + sigma^2/4 weighting.
#include "quant/iq_common.h"
#include "quant/iq_grids.h"
#include "quant/kernels.h"
#include "quant/scale_search.h"
#include "quant/tables_generated.h"

namespace quantlens::kernels {
namespace {

using namespace iq;
using blocks::block_iq2_s;
using blocks::block_iq2_xs;
using blocks::block_iq2_xxs;
using blocks::QK_K;

constexpr int kMaxQ = 3;  // magnitude levels: 1, 3, 5 (times the scale)

float sum_sq(const float* x) {
    float sumx2 = 0;
    for (int i = 0; i < QK_K; ++i) sumx2 += x[i] * x[i];
    return sumx2;
}

int grid_index_of(const IqGrid& grid, const int8_t* L) {
    int packed = 0;
    for (int i = 0; i < 8; ++i) packed |= L[i] << (2 * i);
    QL_ASSERT(grid.map[packed] >= 0);
    return grid.map[packed];
}

// The 16-weight sub-block search shared by IQ2_XS and IQ2_S: 19 candidate ratios around
// max/5, then the groups that were off the grid are re-snapped at the winning scale. Mirrors
// ggml's loop (the 32-weight search of IQ2_XXS below is its twin there too, on purpose).
float search16(const IqGrid& grid, const float* xval, const float* weight, const float* waux,
               float max, int8_t* L) {
    int8_t Laux[16];
    bool on_grid[2] = {true, true}, on_grid_aux[2];
    float best = 0;
    float scale = max / (2 * kMaxQ - 1);
    for (int is = -9; is <= 9; ++is) {
        const float id = (2 * kMaxQ - 1 + is * 0.1f) / max;
        const float this_scale = 1 / id;
        for (int k = 0; k < 2; ++k)
            snap_to_grid<8>(grid, kMaxQ, xval + 8 * k, waux + 8 * k, id, this_scale, Laux + 8 * k,
                            &on_grid_aux[k]);
        float sumqx, sumq2;
        odd_level_sums(16, weight, xval, Laux, &sumqx, &sumq2);
        if (improves_fit(sumqx, sumq2, best, scale)) {
            std::memcpy(L, Laux, 16);
            on_grid[0] = on_grid_aux[0];
            on_grid[1] = on_grid_aux[1];
        }
    }
    if ((!on_grid[0] || !on_grid[1]) && scale > 0) {
        const float id = 1 / scale;
        for (int k = 0; k < 2; ++k) {
            if (on_grid[k]) continue;
            bool unused;
            snap_to_grid<8>(grid, kMaxQ, xval + 8 * k, waux + 8 * k, id, scale, L + 8 * k, &unused);
        }
        float sumqx, sumq2;
        odd_level_sums(16, weight, xval, L, &sumqx, &sumq2);
        if (sumq2 > 0) scale = sumqx / sumq2;
    }
    return scale;
}

int scale_code(float id, float scale) {
    return std::max(0, std::min(15, nearest_int(0.5f * (id * scale - 1))));
}

void quantize_iq2_xxs_block(const IqGrid& grid, const float* xbl, const float* qw,
                            block_iq2_xxs* y) {
    uint32_t q2[2 * (QK_K / 32)] = {};
    float scales[QK_K / 32];
    float weight[32], xval[32], waux[32];
    int8_t L[32], Laux[32];
    y->d = to_half(0.f);
    float max_scale = 0;
    const float sigma2 = sum_sq(xbl) / QK_K;
    for (int ib = 0; ib < QK_K / 32; ++ib) {
        const float* xb = xbl + 32 * ib;
        const float* w = qw + 32 * ib;
        imatrix_weights(xb, w, sigma2, 32, weight);
        for (int i = 0; i < 32; ++i) waux[i] = std::sqrt(weight[i]);
        uint8_t block_signs[4];
        for (int k = 0; k < 4; ++k)
            block_signs[k] = split_signs(xb + 8 * k, weight + 8 * k, xval + 8 * k, true);
        float max = xval[0];
        for (int i = 1; i < 32; ++i) max = std::max(max, xval[i]);
        if (max < kGroupMaxEps) {
            scales[ib] = 0;
            continue;
        }
        // ggml's make_qp_quants (quant/scale_search.h) gives IQ2_XXS its starting scale.
        float scale =
            detail::make_qp_quants(32, kMaxQ + 1, xval, reinterpret_cast<uint8_t*>(L), weight);
        const float eff_max = scale * kMaxQ;
        if (eff_max <= 0) {
            scales[ib] = 0;
            continue;
        }
        float best = 0;
        for (int is = -6; is <= 6; ++is) {
            const float id = (2 * kMaxQ - 1 + is * 0.1f) / eff_max;
            const float this_scale = 1 / id;
            bool unused;
            for (int k = 0; k < 4; ++k)
                snap_to_grid<8>(grid, kMaxQ, xval + 8 * k, waux + 8 * k, id, this_scale,
                                Laux + 8 * k, &unused);
            float sumqx, sumq2;
            odd_level_sums(32, weight, xval, Laux, &sumqx, &sumq2);
            if (improves_fit(sumqx, sumq2, best, scale)) {
                std::memcpy(L, Laux, 32);
            }
        }
        if (scale > 0) {
            const float id = 1 / scale;
            bool unused;
            for (int k = 0; k < 4; ++k)
                snap_to_grid<8>(grid, kMaxQ, xval + 8 * k, waux + 8 * k, id, scale, L + 8 * k,
                                &unused);
            float sumqx, sumq2;
            odd_level_sums(32, weight, xval, L, &sumqx, &sumq2);
            if (sumq2 > 0) scale = sumqx / sumq2;
        }
        if (scale < 0) {
            scale = -scale;
            for (uint8_t& s : block_signs) s = (~s) & 127;
        }
        for (int k = 0; k < 4; ++k) {
            q2[2 * ib] |= static_cast<uint32_t>(grid_index_of(grid, L + 8 * k)) << (8 * k);
            q2[2 * ib + 1] |= static_cast<uint32_t>(block_signs[k]) << (7 * k);
        }
        scales[ib] = scale;
        max_scale = std::max(max_scale, scale);
    }
    if (!max_scale) {
        std::memset(y->qs, 0, sizeof y->qs);
        return;
    }
    const float d = max_scale / 31;
    y->d = to_half(d);
    const float id = 1 / d;
    for (int ib = 0; ib < QK_K / 32; ++ib)
        q2[2 * ib + 1] |= static_cast<uint32_t>(scale_code(id, scales[ib])) << 28;
    std::memcpy(y->qs, q2, sizeof q2);
}

// IQ2_XS (parity signs, 9-bit indices, importance required) and IQ2_S (full signs, 10-bit
// indices split into qs/qh, optional importance) share the 16-weight sub-block search.
template <bool kIsS>
void quantize_iq2_16_block(const IqGrid& grid, const float* xbl, const float* qw, void* out) {
    float scales[QK_K / 16];
    float weight[16], xval[16], waux[16];
    int8_t L[16];
    uint16_t q2[2 * (QK_K / 16)] = {};
    auto* xs = static_cast<block_iq2_xs*>(out);
    auto* s = static_cast<block_iq2_s*>(out);
    if constexpr (kIsS) {
        std::memset(s, 0, sizeof *s);
    } else {
        xs->d = to_half(0.f);
        std::memset(xs->scales, 0, sizeof xs->scales);
    }
    float max_scale = 0;
    const float sigma2 = (kIsS ? 2 : 1) * sum_sq(xbl) / QK_K;
    for (int ib = 0; ib < QK_K / 16; ++ib) {
        const float* xb = xbl + 16 * ib;
        if (qw) {
            const float* w = qw + 16 * ib;
            imatrix_weights(xb, w, sigma2, 16, weight);
        } else {
            for (int i = 0; i < 16; ++i) weight[i] = 0.25f * sigma2 + xb[i] * xb[i];
        }
        for (int i = 0; i < 16; ++i) waux[i] = std::sqrt(weight[i]);
        uint8_t block_signs[2];
        for (int k = 0; k < 2; ++k)
            block_signs[k] = split_signs(xb + 8 * k, weight + 8 * k, xval + 8 * k, !kIsS);
        float max = xval[0];
        for (int i = 1; i < 16; ++i) max = std::max(max, xval[i]);
        std::memset(L, 0, 16);
        if (max < (kIsS ? kGroupMaxEpsIq2S : kGroupMaxEps)) {
            scales[ib] = 0;
            continue;
        }
        float scale = search16(grid, xval, weight, waux, max, L);
        if (scale < 0) {
            scale = -scale;
            for (uint8_t& b : block_signs) b = kIsS ? ~b : (~b) & 127;
        }
        for (int k = 0; k < 2; ++k) {
            const int index = grid_index_of(grid, L + 8 * k);
            if constexpr (kIsS) {
                const int i8 = 2 * ib + k;
                s->qs[i8] = static_cast<uint8_t>(index & 255);
                s->qh[i8 / 4] |= static_cast<uint8_t>((index >> 8) << 2 * (i8 % 4));
                s->qs[QK_K / 8 + i8] = block_signs[k];
            } else {
                q2[2 * ib + k] = static_cast<uint16_t>(index | (block_signs[k] << 9));
            }
        }
        scales[ib] = scale;
        max_scale = std::max(max_scale, scale);
    }
    if (!max_scale) {
        if constexpr (!kIsS) std::memset(xs->qs, 0, sizeof xs->qs);
        return;
    }
    const float d = max_scale / 31;
    if constexpr (kIsS) {
        s->d = to_half(d * 0.9875f);
    } else {
        xs->d = to_half(d);
    }
    uint8_t* packed_scales = kIsS ? s->scales : xs->scales;
    const float id = 1 / d;
    for (int ib = 0; ib < QK_K / 16; ++ib) {
        const int l = scale_code(id, scales[ib]);
        if (ib % 2 == 0) {
            packed_scales[ib / 2] = static_cast<uint8_t>(l);
        } else {
            packed_scales[ib / 2] |= static_cast<uint8_t>(l << 4);
        }
    }
    if constexpr (!kIsS) std::memcpy(xs->qs, q2, sizeof q2);
}

float sign_of(uint8_t signs, int j) {
    return (signs & tables::kmask_iq2xs[j]) ? -1.f : 1.f;
}

// Mirrors ggml's dequantize_row_iq2_xxs.
void iq2_xxs_dequantize(const block_iq2_xxs& x, float* y) {
    const float d = from_half(x.d);
    for (int ib32 = 0; ib32 < QK_K / 32; ++ib32) {
        uint32_t aux32[2];
        std::memcpy(aux32, x.qs + 4 * ib32, sizeof aux32);
        const auto* aux8 = reinterpret_cast<const uint8_t*>(aux32);
        const float db = d * (0.5f + (aux32[1] >> 28)) * 0.25f;
        for (int l = 0; l < 4; ++l) {
            const auto* grid = reinterpret_cast<const uint8_t*>(tables::iq2xxs_grid + aux8[l]);
            const uint8_t signs = tables::ksigns_iq2xs[(aux32[1] >> 7 * l) & 127];
            for (int j = 0; j < 8; ++j) y[j] = db * grid[j] * sign_of(signs, j);
            y += 8;
        }
    }
}

// Mirrors ggml's dequantize_row_iq2_xs.
void iq2_xs_dequantize(const block_iq2_xs& x, float* y) {
    const float d = from_half(x.d);
    for (int ib32 = 0; ib32 < QK_K / 32; ++ib32) {
        const float db[2] = {d * (0.5f + (x.scales[ib32] & 0xf)) * 0.25f,
                             d * (0.5f + (x.scales[ib32] >> 4)) * 0.25f};
        for (int l = 0; l < 4; ++l) {
            const uint16_t q = x.qs[4 * ib32 + l];
            const auto* grid = reinterpret_cast<const uint8_t*>(tables::iq2xs_grid + (q & 511));
            const uint8_t signs = tables::ksigns_iq2xs[q >> 9];
            for (int j = 0; j < 8; ++j) y[j] = db[l / 2] * grid[j] * sign_of(signs, j);
            y += 8;
        }
    }
}

// Mirrors ggml's dequantize_row_iq2_s.
void iq2_s_dequantize(const block_iq2_s& x, float* y) {
    const float d = from_half(x.d);
    const uint8_t* qs = x.qs;
    const uint8_t* qh = x.qh;
    const uint8_t* signs = qs + QK_K / 8;
    for (int ib32 = 0; ib32 < QK_K / 32; ++ib32) {
        const float db[2] = {d * (0.5f + (x.scales[ib32] & 0xf)) * 0.25f,
                             d * (0.5f + (x.scales[ib32] >> 4)) * 0.25f};
        for (int l = 0; l < 4; ++l) {
            const float dl = db[l / 2];
            const int index = qs[l] | ((qh[ib32] << (8 - 2 * l)) & 0x300);
            const auto* grid = reinterpret_cast<const uint8_t*>(tables::iq2s_grid + index);
            for (int j = 0; j < 8; ++j) y[j] = dl * grid[j] * sign_of(signs[l], j);
            y += 8;
        }
        qs += 4;
        signs += 4;
    }
}

}  // namespace

// ---- kernels.h entry points: ggml's quantize_<t> and dequantize_row_<t> ----

QL_IQ_KERNELS(iq2_xxs, block_iq2_xxs, GridKind::Iq2xxs, "IQ2_XXS", quantize_iq2_xxs_block,
              iq2_xxs_dequantize)
QL_IQ_KERNELS(iq2_xs, block_iq2_xs, GridKind::Iq2xs, "IQ2_XS", quantize_iq2_16_block<false>,
              iq2_xs_dequantize)
QL_IQ_KERNELS(iq2_s, block_iq2_s, GridKind::Iq2s, nullptr, quantize_iq2_16_block<true>,
              iq2_s_dequantize)

}  // namespace quantlens::kernels
