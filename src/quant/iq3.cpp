// IQ3_XXS and IQ3_S: groups of 4 weights snapped to a 256- or 512-point lattice (ggml's
// iq3xxs_grid / iq3s_grid), with signs stored separately and a 4-bit scale per 32 weights
// under one fp16 super-scale. Mirrors ggml's quantize_row_iq3_xxs_impl and
// quantize_row_iq3_s_impl step for step: the scale is searched over a fan of candidates,
// off-grid groups are replaced by their best lattice neighbour, and the final fp16 scale
// carries ggml's fudge factors (1.0125 and 1.033).
#include "quant/iq_common.h"
#include "quant/iq_grids.h"
#include "quant/kernels.h"
#include "quant/tables_generated.h"

namespace quantlens::kernels {
namespace {

using namespace iq;
using blocks::block_iq3_s;
using blocks::block_iq3_xxs;
using blocks::QK_K;

constexpr int kLevels = 8;  // lattice levels per coordinate
constexpr int kBlock = 32;  // weights per sub-block scale
constexpr int kGroups = kBlock / 4;

// Importance of each weight of a sub-block: imatrix * sqrt(sigma2 + x^2), or x^2.
void sub_block_weights(const float* xb, const float* qw, float sigma2, float* weight, float* waux) {
    if (qw) {
        imatrix_weights(xb, qw, sigma2, kBlock, weight);
    } else {
        for (int i = 0; i < kBlock; ++i) weight[i] = xb[i] * xb[i];
    }
    for (int i = 0; i < kBlock; ++i) waux[i] = std::sqrt(weight[i]);
}

struct SubBlock {
    float scale;  // >= 0
    int index[kGroups];
};

// The shared scale search of both IQ3 types over one sub-block of |x|. IQ3_XXS tries 31
// candidate ratios and re-snaps only the groups that were off the grid; IQ3_S tries 19 and
// re-snaps every group when any was off.
SubBlock search_sub_block(const IqGrid& grid, const float* xval, const float* weight,
                          const float* waux, float max, bool xxs) {
    int8_t L[kBlock], Laux[kBlock];
    bool on_grid[kGroups], on_grid_aux[kGroups];
    std::memset(L, 0, kBlock);
    float best = 0;
    float scale = max / (2 * kLevels - 1);
    for (bool& b : on_grid) b = xxs;
    const int n_steps = xxs ? 15 : 9;
    for (int is = -n_steps; is <= n_steps; ++is) {
        const float id = (2 * kLevels - 1 + is * 0.2f) / max;
        const float this_scale = 1 / id;
        for (int k = 0; k < kGroups; ++k)
            snap_to_grid<4>(grid, kLevels, xval + 4 * k, waux + 4 * k, id, this_scale, Laux + 4 * k,
                            &on_grid_aux[k]);
        float sumqx, sumq2;
        odd_level_sums(kBlock, weight, xval, Laux, &sumqx, &sumq2);
        if (improves_fit(sumqx, sumq2, best, scale)) {
            std::memcpy(L, Laux, kBlock);
            std::memcpy(on_grid, on_grid_aux, sizeof on_grid);
        }
    }
    int n_off = 0;
    for (bool b : on_grid) n_off += b ? 0 : 1;
    if (n_off > 0 && scale > 0) {
        const float id = 1 / scale;
        for (int k = 0; k < kGroups; ++k) {
            if (xxs && on_grid[k]) continue;
            bool unused;
            snap_to_grid<4>(grid, kLevels, xval + 4 * k, waux + 4 * k, id, scale, L + 4 * k,
                            &unused);
        }
        float sumqx, sumq2;
        odd_level_sums(kBlock, weight, xval, L, &sumqx, &sumq2);
        if (sumq2 > 0) scale = sumqx / sumq2;
    }
    SubBlock out{scale, {}};
    for (int k = 0; k < kGroups; ++k) {
        int packed = 0;
        for (int i = 0; i < 4; ++i) packed |= L[4 * k + i] << (3 * i);
        QL_ASSERT(grid.map[packed] >= 0);
        out.index[k] = grid.map[packed];
    }
    return out;
}

float super_block_sigma2(const float* xbl) {
    float sumx2 = 0;
    for (int i = 0; i < QK_K; ++i) sumx2 += xbl[i] * xbl[i];
    return 2 * sumx2 / QK_K;
}

void quantize_iq3_xxs_block(const IqGrid& grid, const float* xbl, const float* qw,
                            block_iq3_xxs* y) {
    // qs: 64 grid indices, then 8 words of 4x7 sign bits + 4-bit scale.
    uint8_t q3[3 * QK_K / 8] = {};
    uint32_t scales_and_signs[QK_K / kBlock] = {};
    float scales[QK_K / kBlock];
    float weight[kBlock], waux[kBlock], xval[kBlock];
    y->d = to_half(0.f);
    float max_scale = 0;
    const float sigma2 = super_block_sigma2(xbl);
    for (int ib = 0; ib < QK_K / kBlock; ++ib) {
        const float* xb = xbl + kBlock * ib;
        sub_block_weights(xb, qw ? qw + kBlock * ib : nullptr, sigma2, weight, waux);
        uint8_t block_signs[4];
        // Signs go in 7 bits per 8 weights: the 8th is implied by parity.
        for (int k = 0; k < 4; ++k)
            block_signs[k] = split_signs(xb + 8 * k, weight + 8 * k, xval + 8 * k, true);
        float max = xval[0];
        for (int i = 1; i < kBlock; ++i) max = std::max(max, xval[i]);
        if (max < kGroupMaxEpsIq3Xxs) {
            scales[ib] = 0;
            continue;
        }
        SubBlock sb = search_sub_block(grid, xval, weight, waux, max, true);
        if (sb.scale < 0) {  // cannot happen with |x| inputs; ggml guards it the same way
            sb.scale = -sb.scale;
            for (uint8_t& s : block_signs) s = (~s) & 127;
        }
        for (int k = 0; k < kGroups; ++k) q3[8 * ib + k] = static_cast<uint8_t>(sb.index[k]);
        scales_and_signs[ib] = block_signs[0] | (block_signs[1] << 7) | (block_signs[2] << 14) |
                               (block_signs[3] << 21);
        scales[ib] = sb.scale;
        max_scale = std::max(max_scale, sb.scale);
    }
    if (!max_scale) {
        std::memset(y->qs, 0, sizeof y->qs);
        return;
    }
    const float d = max_scale / 31;
    y->d = to_half(d * 1.0125f);
    const float id = 1 / d;
    for (int ib = 0; ib < QK_K / kBlock; ++ib) {
        const int l = std::max(0, std::min(15, nearest_int(0.5f * (id * scales[ib] - 1))));
        scales_and_signs[ib] |= static_cast<uint32_t>(l) << 28;
    }
    std::memcpy(y->qs, q3, QK_K / 4);
    std::memcpy(y->qs + QK_K / 4, scales_and_signs, sizeof scales_and_signs);
}

void quantize_iq3_s_block(const IqGrid& grid, const float* xbl, const float* qw, block_iq3_s* y) {
    std::memset(y, 0, sizeof *y);
    float scales[QK_K / kBlock];
    float weight[kBlock], waux[kBlock], xval[kBlock];
    float max_scale = 0;
    int n_stored = 0;
    const float sigma2 = super_block_sigma2(xbl);
    for (int ib = 0; ib < QK_K / kBlock; ++ib) {
        const float* xb = xbl + kBlock * ib;
        sub_block_weights(xb, qw ? qw + kBlock * ib : nullptr, sigma2, weight, waux);
        uint8_t block_signs[kBlock / 8];
        for (int k = 0; k < kBlock / 8; ++k)
            block_signs[k] = split_signs(xb + 8 * k, weight + 8 * k, xval + 8 * k, false);
        float max = xval[0];
        for (int i = 1; i < kBlock; ++i) max = std::max(max, xval[i]);
        if (!max) {
            scales[ib] = 0;
            continue;
        }
        SubBlock sb = search_sub_block(grid, xval, weight, waux, max, false);
        if (sb.scale < 0) {
            sb.scale = -sb.scale;
            for (uint8_t& s : block_signs) s = ~s;
        }
        // ggml advances its qs/signs cursors only past sub-blocks it stored, so an all-zero
        // sub-block shifts the later ones down while qh stays indexed by position. The
        // format is defined by those bytes, so the cursor is reproduced.
        for (int k = 0; k < kGroups; ++k) {
            const int g = ib * kGroups + k;
            y->qs[n_stored * kGroups + k] = static_cast<uint8_t>(sb.index[k] & 255);
            y->qh[g / 8] |= static_cast<uint8_t>((sb.index[k] >> 8) << (g % 8));
        }
        std::memcpy(y->signs + n_stored * (kBlock / 8), block_signs, kBlock / 8);
        ++n_stored;
        scales[ib] = sb.scale;
        max_scale = std::max(max_scale, sb.scale);
    }
    if (!max_scale) return;
    const float d = max_scale / 31;
    y->d = to_half(d * 1.033f);
    const float id = 1 / d;
    for (int ib = 0; ib < QK_K / kBlock; ib += 2) {
        const int l1 = std::max(0, std::min(15, nearest_int(0.5f * (id * scales[ib] - 1))));
        const int l2 = std::max(0, std::min(15, nearest_int(0.5f * (id * scales[ib + 1] - 1))));
        y->scales[ib / 2] = static_cast<uint8_t>(l1 | (l2 << 4));
    }
}

float sign_of(uint8_t signs, int j) {
    return (signs & tables::kmask_iq2xs[j]) ? -1.f : 1.f;
}

// Mirrors ggml's dequantize_row_iq3_xxs.
void iq3_xxs_dequantize(const block_iq3_xxs& x, float* y) {
    const float d = from_half(x.d);
    const uint8_t* qs = x.qs;
    const uint8_t* scales_and_signs = qs + QK_K / 4;
    for (int ib32 = 0; ib32 < QK_K / 32; ++ib32) {
        const uint32_t aux32 = load_u32(scales_and_signs + 4 * ib32);
        const float db = d * (0.5f + (aux32 >> 28)) * 0.5f;
        for (int l = 0; l < 4; ++l) {
            const uint8_t signs = tables::ksigns_iq2xs[(aux32 >> 7 * l) & 127];
            const auto* grid1 = reinterpret_cast<const uint8_t*>(tables::iq3xxs_grid + qs[2 * l]);
            const auto* grid2 =
                reinterpret_cast<const uint8_t*>(tables::iq3xxs_grid + qs[2 * l + 1]);
            for (int j = 0; j < 4; ++j) {
                y[j] = db * grid1[j] * sign_of(signs, j);
                y[j + 4] = db * grid2[j] * sign_of(signs, j + 4);
            }
            y += 8;
        }
        qs += 8;
    }
}

void iq3_s_dequantize(const block_iq3_s& x, float* y) {
    const float d = from_half(x.d);
    const uint8_t* qs = x.qs;
    const uint8_t* qh = x.qh;
    const uint8_t* signs = x.signs;
    for (int ib32 = 0; ib32 < QK_K / 32; ib32 += 2) {
        const float db[2] = {d * (1 + 2 * (x.scales[ib32 / 2] & 0xf)),
                             d * (1 + 2 * (x.scales[ib32 / 2] >> 4))};
        for (int half = 0; half < 2; ++half) {
            for (int l = 0; l < 4; ++l) {
                const int i1 = qs[2 * l] | ((qh[half] << (8 - 2 * l)) & 256);
                const int i2 = qs[2 * l + 1] | ((qh[half] << (7 - 2 * l)) & 256);
                const auto* grid1 = reinterpret_cast<const uint8_t*>(tables::iq3s_grid + i1);
                const auto* grid2 = reinterpret_cast<const uint8_t*>(tables::iq3s_grid + i2);
                for (int j = 0; j < 4; ++j) {
                    y[j] = db[half] * grid1[j] * sign_of(signs[l], j);
                    y[j + 4] = db[half] * grid2[j] * sign_of(signs[l], j + 4);
                }
                y += 8;
            }
            qs += 8;
            signs += 4;
        }
        qh += 2;
    }
}

}  // namespace

// ---- kernels.h entry points: ggml's quantize_<t> and dequantize_row_<t> ----

QL_IQ_KERNELS(iq3_xxs, block_iq3_xxs, GridKind::Iq3xxs, nullptr, quantize_iq3_xxs_block,
              iq3_xxs_dequantize)
QL_IQ_KERNELS(iq3_s, block_iq3_s, GridKind::Iq3s, nullptr, quantize_iq3_s_block, iq3_s_dequantize)

}  // namespace quantlens::kernels
