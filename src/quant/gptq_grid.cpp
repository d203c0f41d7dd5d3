// Fixed-parameter grids of the block formats GPTQ writes; see gptq_grid.h. Every float
// expression here repeats the order of operations of our ggml-exact quantizers and
// dequantizers (kquants.cpp, legacy.cpp), which is what makes a diagonal-Hessian GPTQ run
// byte-identical to quantize(); blocks.h turns off fp contraction for this file too.
#include "quant/gptq_grid.h"

#include <cmath>
#include <cstddef>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "quant/blocks.h"
#include "quant/iq_common.h"
#include "quant/kernels.h"
#include "quant/scale_search.h"
#include "quant/tables_generated.h"

namespace quantlens::gptq_detail {
namespace {

using namespace blocks;
using kernels::detail::nearest_int;
using kernels::detail::step_min_k4;

inline int clamp_int(int v, int lo, int hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

const GridFormat kFormats[] = {
    {GgmlType::Q8_0, QK8_0, QK8_0, kernels::quantize_rows_q8_0},
    {GgmlType::Q2_K, QK_K, 16, kernels::quantize_rows_q2_K},
    {GgmlType::Q3_K, QK_K, 16, kernels::quantize_rows_q3_K},
    {GgmlType::Q4_K, QK_K, 32, kernels::quantize_rows_q4_K},
    {GgmlType::Q5_K, QK_K, 32, kernels::quantize_rows_q5_K},
    {GgmlType::Q6_K, QK_K, 16, kernels::quantize_rows_q6_K},
    {GgmlType::IQ4_XS, QK_K, 32, kernels::quantize_rows_iq4_xs},
};

// ---- code layouts: 2-bit planes (Q2_K, Q3_K low bits), nibbles (Q4_K, Q5_K low bits) ----

// Byte l of each 32-byte group holds weights l, l+32, l+64, l+96 of a 128-weight half.
void unpack_2bit(const uint8_t* qs, uint8_t* L) {
    for (int h = 0; h < 2; ++h)
        for (int l = 0; l < 32; ++l)
            for (int s = 0; s < 4; ++s) L[128 * h + 32 * s + l] = (qs[32 * h + l] >> (2 * s)) & 3;
}
void pack_2bit(const uint8_t* L, uint8_t* qs) {
    for (int h = 0; h < 2; ++h)
        for (int l = 0; l < 32; ++l) {
            uint8_t b = 0;
            for (int s = 0; s < 4; ++s)
                b |= static_cast<uint8_t>((L[128 * h + 32 * s + l] & 3) << (2 * s));
            qs[32 * h + l] = b;
        }
}

// Byte l of each 32-byte group: low nibble weight 64c + l, high nibble weight 64c + 32 + l.
void unpack_nibbles(const uint8_t* qs, uint8_t* L) {
    for (int c = 0; c < 4; ++c)
        for (int l = 0; l < 32; ++l) {
            L[64 * c + l] = qs[32 * c + l] & 0xF;
            L[64 * c + 32 + l] = qs[32 * c + l] >> 4;
        }
}
void pack_nibbles(const uint8_t* L, uint8_t* qs) {
    for (int c = 0; c < 4; ++c)
        for (int l = 0; l < 32; ++l)
            qs[32 * c + l] =
                static_cast<uint8_t>((L[64 * c + l] & 0xF) | ((L[64 * c + 32 + l] & 0xF) << 4));
}

// Q3_K: 16 six-bit scale codes (offset 32), low nibbles in bytes 0-7, high 2 bits in 8-11.
int q3_K_scale(const uint8_t* scales, int j) {
    const int low = j < 8 ? scales[j] & 0xF : scales[j - 8] >> 4;
    const int high = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (low | (high << 4)) - 32;
}

// Q4_K's grid and low nibbles; Q5_K has the same layout plus a fifth bit per weight (qh).
template <typename Block>
void decode_k4(const Block& b, BlockGrid& g) {
    const float dall = f16_to_f32(b.d);
    const float dmin = f16_to_f32(b.dmin);
    for (int j = 0; j < QK_K / 32; ++j) {
        const auto [step, min] = step_min_k4(j, b.scales, dall, dmin);
        g.step[j] = step;
        g.min[j] = min;
    }
    unpack_nibbles(b.qs, g.code);
}

// The block at `blk` (which need not be aligned), as a Block.
template <typename Block>
Block read_block(const uint8_t* blk) {
    Block b;
    std::memcpy(&b, blk, sizeof b);
    return b;
}

}  // namespace

const GridFormat* grid_format(GgmlType type) {
    for (const GridFormat& f : kFormats)
        if (f.type == type) return &f;
    return nullptr;
}

void decode(const GridFormat& f, const uint8_t* blk, const float* x, BlockGrid& g) {
    std::memset(g.min, 0, sizeof g.min);
    switch (f.type) {
        case GgmlType::Q8_0: {
            const auto b = read_block<block_q8_0>(blk);
            // As legacy.cpp's q8_0_block: codes are rounded against amax/127 in float.
            float amax = 0.0f;
            for (int j = 0; j < QK8_0; ++j) amax = amax > std::fabs(x[j]) ? amax : std::fabs(x[j]);
            const float d = amax / 127;
            g.inv = d != 0 ? 1.0f / d : 0.0f;
            g.step[0] = f16_to_f32(b.d);
            std::memcpy(g.code, b.qs, QK8_0);
            return;
        }
        case GgmlType::Q2_K: {
            const auto b = read_block<block_q2_K>(blk);
            const float dall = f16_to_f32(b.d);
            const float dmin = f16_to_f32(b.dmin);
            for (int j = 0; j < QK_K / 16; ++j) {
                g.step[j] = dall * (b.scales[j] & 0xF);
                g.min[j] = dmin * (b.scales[j] >> 4);
            }
            unpack_2bit(b.qs, g.code);
            return;
        }
        case GgmlType::Q3_K: {
            const auto b = read_block<block_q3_K>(blk);
            const float dall = f16_to_f32(b.d);
            for (int j = 0; j < QK_K / 16; ++j)
                g.step[j] = dall * static_cast<int8_t>(q3_K_scale(b.scales, j));
            unpack_2bit(b.qs, g.code);
            for (int j = 0; j < QK_K; ++j)
                if (b.hmask[j % 32] & (1u << (j / 32))) g.code[j] += 4;
            return;
        }
        case GgmlType::Q4_K:
            decode_k4(read_block<block_q4_K>(blk), g);
            return;
        case GgmlType::Q5_K: {
            const auto b = read_block<block_q5_K>(blk);
            decode_k4(b, g);
            for (int c = 0; c < 4; ++c)
                for (int l = 0; l < 32; ++l) {
                    if (b.qh[l] & (1u << (2 * c))) g.code[64 * c + l] += 16;
                    if (b.qh[l] & (2u << (2 * c))) g.code[64 * c + 32 + l] += 16;
                }
            return;
        }
        case GgmlType::Q6_K: {
            const auto b = read_block<block_q6_K>(blk);
            const float dall = f16_to_f32(b.d);
            for (int j = 0; j < QK_K / 16; ++j) g.step[j] = dall * b.scales[j];
            for (int h = 0; h < 2; ++h) {
                const uint8_t* ql = b.ql + 64 * h;
                const uint8_t* qh = b.qh + 32 * h;
                uint8_t* L = g.code + 128 * h;
                for (int l = 0; l < 32; ++l) {
                    L[l] = static_cast<uint8_t>((ql[l] & 0xF) | ((qh[l] & 3) << 4));
                    L[l + 32] =
                        static_cast<uint8_t>((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4));
                    L[l + 64] = static_cast<uint8_t>((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
                    L[l + 96] = static_cast<uint8_t>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
                }
            }
            return;
        }
        case GgmlType::IQ4_XS: {
            const auto b = read_block<block_iq4_xs>(blk);
            const float d = f16_to_f32(b.d);
            for (int ib = 0; ib < QK_K / 32; ++ib) {
                const int ls = ((b.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) |
                               (((b.scales_h >> (2 * ib)) & 3) << 4);
                g.step[ib] = d * (ls - 32);
                for (int j = 0; j < 16; ++j) {
                    g.code[32 * ib + j] = b.qs[16 * ib + j] & 0xF;
                    g.code[32 * ib + 16 + j] = b.qs[16 * ib + j] >> 4;
                }
            }
            return;
        }
        default:
            QL_ASSERT(false && "decode: no grid for this type");
    }
}

uint8_t round_weight(const GridFormat& f, const BlockGrid& g, int c, float x, float* value) {
    const int s = c / f.sub;
    const float step = g.step[s];
    int q;
    switch (f.type) {
        case GgmlType::Q8_0:
            q = clamp_int(static_cast<int>(std::round(x * g.inv)), -127, 127);
            *value = static_cast<float>(q) * g.step[0];
            return static_cast<uint8_t>(static_cast<int8_t>(q));
        case GgmlType::Q2_K:
        case GgmlType::Q4_K:
        case GgmlType::Q5_K: {
            const int nmax = f.type == GgmlType::Q2_K ? 3 : (f.type == GgmlType::Q4_K ? 15 : 31);
            q = step == 0 ? g.code[c] : clamp_int(nearest_int((x + g.min[s]) / step), 0, nmax);
            *value = step * static_cast<float>(q) - g.min[s];
            return static_cast<uint8_t>(q);
        }
        case GgmlType::Q3_K:
            q = step == 0 ? g.code[c] : clamp_int(nearest_int(x / step), -4, 3) + 4;
            *value = step * static_cast<float>(q - 4);
            return static_cast<uint8_t>(q);
        case GgmlType::Q6_K:
            q = step == 0 ? g.code[c] : clamp_int(nearest_int(x / step), -32, 31) + 32;
            *value = step * static_cast<float>(q - 32);
            return static_cast<uint8_t>(q);
        case GgmlType::IQ4_XS: {
            // Nearest table level of x/step, as iq4.cpp re-picks (there against the unrounded
            // super scale, here against the stored f16 one: codes can differ at near-ties).
            const int8_t* values = tables::kvalues_iq4nl;
            q = step == 0 ? g.code[c] : kernels::iq::best_index_int8(16, values, (1 / step) * x);
            *value = step * values[q];
            return static_cast<uint8_t>(q);
        }
        default:
            QL_ASSERT(false && "round_weight: no grid for this type");
            return 0;
    }
}

void pack(const GridFormat& f, const uint8_t* L, uint8_t* blk) {
    switch (f.type) {
        case GgmlType::Q8_0:
            std::memcpy(blk + offsetof(block_q8_0, qs), L, QK8_0);
            return;
        case GgmlType::Q2_K:
            pack_2bit(L, blk + offsetof(block_q2_K, qs));
            return;
        case GgmlType::Q3_K: {
            uint8_t low[QK_K];
            uint8_t* hmask = blk + offsetof(block_q3_K, hmask);
            std::memset(hmask, 0, QK_K / 8);
            for (int j = 0; j < QK_K; ++j) {
                low[j] = L[j] & 3;
                if (L[j] > 3) hmask[j % 32] |= static_cast<uint8_t>(1u << (j / 32));
            }
            pack_2bit(low, blk + offsetof(block_q3_K, qs));
            return;
        }
        case GgmlType::Q4_K:
            pack_nibbles(L, blk + offsetof(block_q4_K, qs));
            return;
        case GgmlType::Q5_K: {
            uint8_t* qh = blk + offsetof(block_q5_K, qh);
            std::memset(qh, 0, QK_K / 8);
            for (int c = 0; c < 4; ++c)
                for (int l = 0; l < 32; ++l) {
                    if (L[64 * c + l] > 15) qh[l] |= static_cast<uint8_t>(1u << (2 * c));
                    if (L[64 * c + 32 + l] > 15) qh[l] |= static_cast<uint8_t>(2u << (2 * c));
                }
            pack_nibbles(L, blk + offsetof(block_q5_K, qs));
            return;
        }
        case GgmlType::Q6_K: {
            uint8_t* ql0 = blk + offsetof(block_q6_K, ql);
            uint8_t* qh0 = blk + offsetof(block_q6_K, qh);
            for (int h = 0; h < 2; ++h) {
                uint8_t* ql = ql0 + 64 * h;
                uint8_t* qh = qh0 + 32 * h;
                const uint8_t* Lh = L + 128 * h;
                for (int l = 0; l < 32; ++l) {
                    ql[l] = static_cast<uint8_t>((Lh[l] & 0xF) | ((Lh[l + 64] & 0xF) << 4));
                    ql[l + 32] =
                        static_cast<uint8_t>((Lh[l + 32] & 0xF) | ((Lh[l + 96] & 0xF) << 4));
                    qh[l] =
                        static_cast<uint8_t>((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) |
                                             ((Lh[l + 64] >> 4) << 4) | ((Lh[l + 96] >> 4) << 6));
                }
            }
            return;
        }
        case GgmlType::IQ4_XS: {
            uint8_t* qs = blk + offsetof(block_iq4_xs, qs);
            for (int ib = 0; ib < QK_K / 32; ++ib)
                for (int j = 0; j < 16; ++j)
                    qs[16 * ib + j] =
                        static_cast<uint8_t>(L[32 * ib + j] | (L[32 * ib + 16 + j] << 4));
            return;
        }
        default:
            QL_ASSERT(false && "pack: no grid for this type");
    }
}

}  // namespace quantlens::gptq_detail
