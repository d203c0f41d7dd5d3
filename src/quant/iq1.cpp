// IQ1_S and IQ1_M: groups of 8 ternary values {-1, 0, +1} from a 2048-point lattice
// (ggml's iq1s_grid), shifted by +-1/8 per group, with 3-bit sub-block scales. IQ1_S
// (importance required) has one fp16 scale and one shift per 32 weights; IQ1_M spreads its
// fp16 super-scale over the 4-bit-aligned top bits of the sub-scales and chooses a shift per
// 8 weights. Both find the optimal 3-way split of the sorted weights exactly, then snap to
// the lattice, as ggml's quantize_row_iq1_s_impl / quantize_row_iq1_m_impl do.
#include <algorithm>
#include <limits>
#include <numeric>

#include "quant/iq_common.h"
#include "quant/iq_grids.h"
#include "quant/kernels.h"
#include "quant/tables_generated.h"

namespace quantlens::kernels {
namespace {

using namespace iq;
using blocks::block_iq1_m;
using blocks::block_iq1_s;
using blocks::QK_K;

constexpr float kXp[3] = {-1 + kIq1Delta, kIq1Delta, 1 + kIq1Delta};
constexpr float kXm[3] = {-1 - kIq1Delta, -kIq1Delta, 1 - kIq1Delta};

// Grid index of 8 ternary levels (0, 1, 2 for -1, 0, +1); off-grid vectors go to the
// neighbour with the least weighted error at `scale` with values xx[level]. L is rewritten
// to the chosen point's levels. Sets *on_grid.
int snap_iq1(const IqGrid& grid, const float* xb, const float* weight, float scale, const float* xx,
             int8_t* L, bool* on_grid) {
    int packed = 0;
    for (int j = 0; j < 8; ++j) packed |= L[j] << (2 * j);
    int index = grid.map[packed];
    *on_grid = index >= 0;
    if (index >= 0) return index;
    const uint16_t* nb = grid.neighbours_of(packed);
    float best = std::numeric_limits<float>::max();
    for (int n = 1; n <= nb[0]; ++n) {
        const int8_t* p = grid.point(nb[n]);
        float d2 = 0;
        for (int i = 0; i < 8; ++i) {
            const float q = xx[(p[i] - 1) / 2];
            const float w = weight[i];
            const float diff = scale * q - xb[i];
            d2 += w * diff * diff;
        }
        if (d2 < best) {
            best = d2;
            index = nb[n];
        }
    }
    QL_ASSERT(index >= 0);
    const int8_t* p = grid.point(index);
    for (int i = 0; i < 8; ++i) L[i] = static_cast<int8_t>((p[i] - 1) / 2);
    return index;
}

// Indices of xb sorted by value (stable, as the small-array qsort ggml relies on).
template <int N>
void sort_indices(const float* xb, int* idx) {
    std::iota(idx, idx + N, 0);
    std::stable_sort(idx, idx + N, [&](int a, int b) { return xb[a] < xb[b]; });
}

// Largest |x| of a sub-block, as ggml computes it (std::max from the first element).
template <int N>
float max_abs(const float* xb) {
    float max = std::fabs(xb[0]);
    for (int i = 1; i < N; ++i) max = std::max(max, std::fabs(xb[i]));
    return max;
}

// Levels of the split (i1, i2) of the weights sorted by idx: 0 before i1, 1 up to i2, 2 from
// i2 on. A negative scale is made positive by mirroring the levels; returns true when it was
// (the shift pattern then mirrors too).
template <int N>
bool split_levels(const int* idx, int i1, int i2, float& scale, int8_t* L) {
    for (int j = 0; j < i1; ++j) L[idx[j]] = 0;
    for (int j = i1; j < i2; ++j) L[idx[j]] = 1;
    for (int j = i2; j < N; ++j) L[idx[j]] = 2;
    if (!(scale < 0)) return false;  // a NaN scale is left alone, as ggml leaves it
    for (int j = 0; j < N; ++j) L[j] = static_cast<int8_t>(2 - L[j]);
    scale = -scale;
    return true;
}

// The scale refit by weighted least squares to the grid points that the groups of 8 snapped
// to (index[k], its three level values values[k]); kept when the fit is not positive.
template <int Groups>
float refit_to_grid(const IqGrid& grid, const int* index, const float* const* values,
                    const float* weight, const float* xb, float scale) {
    float sumqx = 0, sumq2 = 0;
    for (int k = 0; k < Groups; ++k) {
        const int8_t* p = grid.point(index[k]);
        for (int j = 0; j < 8; ++j) {
            const float w = weight[8 * k + j];
            const float q = values[k][(p[j] - 1) / 2];
            sumqx += w * q * xb[8 * k + j];
            sumq2 += w * q * q;
        }
    }
    return sumqx > 0 && sumq2 > 0 ? sumqx / sumq2 : scale;
}

float sigma2_of(const float* xbl) {
    float sumx2 = 0;
    for (int i = 0; i < QK_K; ++i) sumx2 += xbl[i] * xbl[i];
    return 2 * sumx2 / QK_K;
}

// Mirrors ggml's quantize_row_iq1_s_impl (its scale search is IQ1_M's on purpose).
void quantize_iq1_s_block(const IqGrid& grid, const float* xbl, const float* qw, block_iq1_s* y) {
    constexpr int kBlock = 32;
    float scales[QK_K / kBlock];
    int8_t shifts[QK_K / kBlock];
    float weight[kBlock], sumx[kBlock + 1], sumw[kBlock + 1];
    int8_t L[kBlock];
    int idx[kBlock];
    y->d = to_half(0.f);
    std::memset(y->qs, 0, sizeof y->qs);
    std::memset(y->qh, 0, sizeof y->qh);
    float max_scale = 0;
    const float sigma2 = sigma2_of(xbl);
    for (int ib = 0; ib < QK_K / kBlock; ++ib) {
        const float* xb = xbl + kBlock * ib;
        const float* w = qw + kBlock * ib;
        imatrix_weights(xb, w, sigma2, kBlock, weight);
        const float max = max_abs<kBlock>(xb);
        if (max < kGroupMaxEpsIq1S) {
            scales[ib] = 0;
            shifts[ib] = 1;
            continue;
        }
        // With three values the weighted least-squares optimum is found exhaustively over
        // the two split points of the sorted weights, using prefix sums.
        sort_indices<kBlock>(xb, idx);
        sumx[0] = sumw[0] = 0;
        for (int j = 0; j < kBlock; ++j) {
            const int i = idx[j];
            sumx[j + 1] = sumx[j] + weight[i] * xb[i];
            sumw[j + 1] = sumw[j] + weight[i];
        }
        float best_score = -std::numeric_limits<float>::max(), scale = max;
        int besti1 = -1, besti2 = -1, best_shift = 0;
        for (int i1 = 0; i1 <= kBlock; ++i1) {
            for (int i2 = i1; i2 <= kBlock; ++i2) {
                for (const int shift : {1, -1}) {
                    const float* v = shift == 1 ? kXp : kXm;
                    const float sumqx = (sumx[i1] - sumx[0]) * v[0] + (sumx[i2] - sumx[i1]) * v[1] +
                                        (sumx[kBlock] - sumx[i2]) * v[2];
                    const float sumq2 = (sumw[i1] - sumw[0]) * v[0] * v[0] +
                                        (sumw[i2] - sumw[i1]) * v[1] * v[1] +
                                        (sumw[kBlock] - sumw[i2]) * v[2] * v[2];
                    if (improves_fit(sumqx, sumq2, best_score, scale)) {
                        besti1 = i1;
                        besti2 = i2;
                        best_shift = shift;
                    }
                }
            }
        }
        if (besti1 < 0 || besti2 < 0 || best_shift == 0) {
            scales[ib] = 0;
            shifts[ib] = 1;
            continue;
        }
        if (split_levels<kBlock>(idx, besti1, besti2, scale, L)) best_shift = -best_shift;
        const float* xx = best_shift == 1 ? kXp : kXm;
        bool all_on_grid = true;
        int index[kBlock / 8];
        for (int k = 0; k < kBlock / 8; ++k) {
            bool on;
            index[k] = snap_iq1(grid, xb + 8 * k, weight + 8 * k, scale, xx, L + 8 * k, &on);
            all_on_grid = all_on_grid && on;
        }
        if (!all_on_grid) {
            const float* values[kBlock / 8] = {xx, xx, xx, xx};
            scale = refit_to_grid<kBlock / 8>(grid, index, values, weight, xb, scale);
        }
        uint16_t h = 0;
        for (int k = 0; k < kBlock / 8; ++k) {
            y->qs[(kBlock / 8) * ib + k] = static_cast<uint8_t>(index[k] & 255);
            h |= static_cast<uint16_t>((index[k] >> 8) << (3 * k));
        }
        y->qh[ib] = h;
        scales[ib] = scale;
        shifts[ib] = static_cast<int8_t>(best_shift);
        max_scale = std::max(max_scale, scale);
    }
    if (!max_scale) return;
    const float d = max_scale / 15;
    y->d = to_half(d * 1.125f);  // ggml's empirical correction
    const float id = 1 / d;
    for (int ib = 0; ib < QK_K / kBlock; ++ib) {
        int l = std::max(0, std::min(7, nearest_int(0.5f * (id * scales[ib] - 1))));
        if (shifts[ib] == -1) l |= 8;
        y->qh[ib] |= static_cast<uint16_t>(l << 12);
    }
}

void iq1_m_weights(const float* xb, const float* qw, float sigma2, float* weight) {
    if (qw) {
        imatrix_weights(xb, qw, sigma2, 16, weight);
    } else {
        for (int i = 0; i < 16; ++i) weight[i] = xb[i] * xb[i];
    }
}

// Shift pattern k: bit 1 = first 8 weights use -delta, bit 0 = second 8 use -delta.
const float* iq1_m_values(int k, int group) {
    return (group == 0 ? k < 2 : k % 2 == 0) ? kXp : kXm;
}

// Mirrors ggml's quantize_row_iq1_m_impl.
void quantize_iq1_m_block(const IqGrid& grid, const float* xbl, const float* qw, block_iq1_m* y) {
    constexpr int kBlock = 16;
    static constexpr uint8_t kMasks[4] = {0x00, 0x80, 0x08, 0x88};
    float scales[QK_K / kBlock];
    int8_t shifts[QK_K / kBlock];
    float weight[kBlock];
    int8_t L[kBlock];
    int idx[kBlock];
    std::memset(y, 0, sizeof *y);
    float max_scale = 0;
    const float sigma2 = sigma2_of(xbl);
    for (int ib = 0; ib < QK_K / kBlock; ++ib) {
        const float* xb = xbl + kBlock * ib;
        iq1_m_weights(xb, qw ? qw + kBlock * ib : nullptr, sigma2, weight);
        const float max = max_abs<kBlock>(xb);
        if (max < kGroupMaxEpsIq1M) {
            scales[ib] = 0;
            shifts[ib] = 0;
            continue;
        }
        sort_indices<kBlock>(xb, idx);
        float best_score = -std::numeric_limits<float>::max(), scale = max;
        int besti1 = -1, besti2 = -1, best_k = -1;
        // Every split (i1, i2) of the sorted weights into the three levels, scored for the
        // four shift patterns (bit 1: first 8 weights use -delta, bit 0: second 8). ggml
        // accumulates each split's sums weight by weight in sorted order, and with tied values
        // (a constant block) the winner is decided by that rounding; so the sums here are built
        // in the same order, reusing the common prefix and precomputed per-weight terms.
        float tx[kBlock][3][4], t2[kBlock][3][4];
        for (int j = 0; j < kBlock; ++j) {
            const int i = idx[j];
            const bool first = i < kBlock / 2;
            for (int level = 0; level < 3; ++level) {
                const float p = kXp[level], m = kXm[level];
                const float v[4] = {p, first ? p : m, first ? m : p, m};
                for (int k = 0; k < 4; ++k) {
                    tx[j][level][k] = weight[i] * v[k] * xb[i];
                    t2[j][level][k] = weight[i] * v[k] * v[k];
                }
            }
        }
        float low_x[4] = {}, low_2[4] = {};  // sums over j < i1 at level 0
        for (int i1 = 0; i1 <= kBlock; ++i1) {
            float mid_x[4], mid_2[4];  // plus j in [i1, i2) at level 1
            std::memcpy(mid_x, low_x, sizeof mid_x);
            std::memcpy(mid_2, low_2, sizeof mid_2);
            for (int i2 = i1; i2 <= kBlock; ++i2) {
                float sumqx[4], sumq2[4];
                std::memcpy(sumqx, mid_x, sizeof sumqx);
                std::memcpy(sumq2, mid_2, sizeof sumq2);
                for (int j = i2; j < kBlock; ++j) {
                    for (int k = 0; k < 4; ++k) sumqx[k] += tx[j][2][k];
                    for (int k = 0; k < 4; ++k) sumq2[k] += t2[j][2][k];
                }
                for (int k = 0; k < 4; ++k) {
                    if (improves_fit(sumqx[k], sumq2[k], best_score, scale)) {
                        besti1 = i1;
                        besti2 = i2;
                        best_k = k;
                    }
                }
                if (i2 < kBlock) {
                    for (int k = 0; k < 4; ++k) mid_x[k] += tx[i2][1][k];
                    for (int k = 0; k < 4; ++k) mid_2[k] += t2[i2][1][k];
                }
            }
            if (i1 < kBlock) {
                for (int k = 0; k < 4; ++k) low_x[k] += tx[i1][0][k];
                for (int k = 0; k < 4; ++k) low_2[k] += t2[i1][0][k];
            }
        }
        if (besti1 < 0 || besti2 < 0 || best_k < 0) {
            scales[ib] = 0;
            shifts[ib] = 0;
            continue;
        }
        if (split_levels<kBlock>(idx, besti1, besti2, scale, L)) best_k = 3 - best_k;
        bool all_on_grid = true;
        int index[2];
        for (int k = 0; k < 2; ++k) {
            bool on;
            index[k] = snap_iq1(grid, xb + 8 * k, weight + 8 * k, scale, iq1_m_values(best_k, k),
                                L + 8 * k, &on);
            all_on_grid = all_on_grid && on;
        }
        if (!all_on_grid) {
            const float* values[2] = {iq1_m_values(best_k, 0), iq1_m_values(best_k, 1)};
            scale = refit_to_grid<2>(grid, index, values, weight, xb, scale);
        }
        y->qs[2 * ib] = static_cast<uint8_t>(index[0] & 255);
        y->qs[2 * ib + 1] = static_cast<uint8_t>(index[1] & 255);
        y->qh[ib] = static_cast<uint8_t>((index[0] >> 8) | ((index[1] >> 8) << 4));
        scales[ib] = scale;
        shifts[ib] = static_cast<int8_t>(best_k);
        max_scale = std::max(max_scale, scale);
    }
    if (!max_scale) return;

    // Quantize the sub-scales, then refit the super-scale against the final quantized
    // values of the whole block.
    uint16_t sc[4] = {};
    float d = max_scale / 15;
    const float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int ib = 0; ib < QK_K / kBlock; ++ib) {
        const int l = std::max(0, std::min(7, nearest_int(0.5f * (id * scales[ib] - 1))));
        sc[ib / 4] |= static_cast<uint16_t>(l << (3 * (ib % 4)));
        y->qh[ib] |= kMasks[shifts[ib]];
        const float* xb = xbl + kBlock * ib;
        iq1_m_weights(xb, qw ? qw + kBlock * ib : nullptr, sigma2, weight);
        for (int k = 0; k < 2; ++k) {
            const float* xx = iq1_m_values(shifts[ib], k);
            const int index = y->qs[2 * ib + k] + ((y->qh[ib] << (8 - 4 * k)) & 0x700);
            const int8_t* p = grid.point(index);
            for (int j = 0; j < 8; ++j) {
                const float w = weight[8 * k + j];
                const float q = xx[(p[j] - 1) / 2] * (2 * l + 1);
                sumqx += w * q * xb[8 * k + j];
                sumq2 += w * q * q;
            }
        }
    }
    if (sumq2 > 0) d = sumqx / sumq2;
    const uint16_t s = to_half(d * 1.1125f);  // ggml's empirical correction
    sc[0] |= static_cast<uint16_t>((s & 0x000f) << 12);
    sc[1] |= static_cast<uint16_t>((s & 0x00f0) << 8);
    sc[2] |= static_cast<uint16_t>((s & 0x0f00) << 4);
    sc[3] |= static_cast<uint16_t>(s & 0xf000);
    std::memcpy(y->scales, sc, sizeof sc);
}

// Mirrors ggml's dequantize_row_iq1_s.
void iq1_s_dequantize(const block_iq1_s& x, float* y) {
    const float d = from_half(x.d);
    const uint8_t* qs = x.qs;
    for (int ib = 0; ib < QK_K / 32; ++ib) {
        const uint16_t qh = x.qh[ib];
        const float dl = d * (2 * ((qh >> 12) & 7) + 1);
        const float delta = qh & 0x8000 ? -kIq1Delta : kIq1Delta;
        for (int l = 0; l < 4; ++l) {
            const auto* grid = reinterpret_cast<const int8_t*>(
                tables::iq1s_grid + (qs[l] | (((qh >> 3 * l) & 7) << 8)));
            for (int j = 0; j < 8; ++j) y[j] = dl * (grid[j] + delta);
            y += 8;
        }
        qs += 4;
    }
}

// Mirrors ggml's dequantize_row_iq1_m.
void iq1_m_dequantize(const block_iq1_m& x, float* y) {
    uint16_t sc[4];
    std::memcpy(sc, x.scales, sizeof sc);
    const uint16_t s16 = static_cast<uint16_t>((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) |
                                               ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000));
    const float d = from_half(s16);
    const uint8_t* qs = x.qs;
    const uint8_t* qh = x.qh;
    for (int ib = 0; ib < QK_K / 32; ++ib) {
        const float dl1 = d * (2 * ((sc[ib / 2] >> (6 * (ib % 2))) & 0x7) + 1);
        const float dl2 = d * (2 * ((sc[ib / 2] >> (6 * (ib % 2) + 3)) & 0x7) + 1);
        const int idx[4] = {qs[0] | ((qh[0] << 8) & 0x700), qs[1] | ((qh[0] << 4) & 0x700),
                            qs[2] | ((qh[1] << 8) & 0x700), qs[3] | ((qh[1] << 4) & 0x700)};
        const float delta[4] = {
            qh[0] & 0x08 ? -kIq1Delta : kIq1Delta, qh[0] & 0x80 ? -kIq1Delta : kIq1Delta,
            qh[1] & 0x08 ? -kIq1Delta : kIq1Delta, qh[1] & 0x80 ? -kIq1Delta : kIq1Delta};
        for (int l = 0; l < 4; ++l) {
            const auto* grid = reinterpret_cast<const int8_t*>(tables::iq1s_grid + idx[l]);
            const float dl = l < 2 ? dl1 : dl2;
            for (int j = 0; j < 8; ++j) y[j] = dl * (grid[j] + delta[l]);
            y += 8;
        }
        qs += 4;
        qh += 2;
    }
}

}  // namespace

// ---- kernels.h entry points: ggml's quantize_<t> and dequantize_row_<t> ----

QL_IQ_KERNELS(iq1_s, block_iq1_s, GridKind::Iq1s, "IQ1_S", quantize_iq1_s_block, iq1_s_dequantize)
QL_IQ_KERNELS(iq1_m, block_iq1_m, GridKind::Iq1s, nullptr, quantize_iq1_m_block, iq1_m_dequantize)

}  // namespace quantlens::kernels
