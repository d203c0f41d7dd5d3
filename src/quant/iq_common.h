// Scalar helpers shared by the i-quant, ternary and FP4 kernels. Each one reproduces a
// ggml reference helper's exact rounding (which is what makes the bytes match), so their
// semantics are part of the formats: do not "improve" them.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "quant/blocks.h"  // also disables fp contraction for this translation unit
#include "quant/scale_search.h"

namespace quantlens::kernels::iq {

using detail::kGroupMaxEps;  // groups below it are all-zero (scale_search.h)
inline constexpr float kGroupMaxEpsIq3Xxs = 1e-8f;
inline constexpr float kGroupMaxEpsIq2S = 1e-8f;
inline constexpr float kGroupMaxEpsIq1M = 1e-7f;
inline constexpr float kGroupMaxEpsIq1S = 1e-12f;
inline constexpr float kIq1Delta = 0.125f;  // IQ1_S and IQ1_M grid shift

// ggml's rounding, the K-quants' own, and its group helpers (scale_search.h).
using detail::imatrix_weights;
using detail::improves_fit;
using detail::nearest_int;
using detail::signed_extreme;
using detail::SignedExtreme;

// Weighted least-squares sums of the odd magnitude levels q = 2L+1 (IQ2, IQ3) against |x|:
// the best scale for them is sumqx / sumq2.
inline void odd_level_sums(int n, const float* weight, const float* xval, const int8_t* L,
                           float* sumqx, float* sumq2) {
    *sumqx = 0;
    *sumq2 = 0;
    for (int i = 0; i < n; ++i) {
        const float w = weight[i];
        const float q = 2 * L[i] + 1;
        *sumqx += w * xval[i] * q;
        *sumq2 += w * q * q;
    }
}

// Index of the level of a sorted table (size n, a power of two) nearest to x: level i is
// chosen once x reaches the midpoint of levels i-1 and i. Doubling x keeps the midpoint
// comparison exact in integers.
inline int best_index_int8(int n, const int8_t* val, float x) {
    const float x2 = x + x;
    int idx = 0;
    for (int step = n >> 1; step > 0; step >>= 1) {
        const int j = idx + step;
        idx = (x2 >= static_cast<float>(val[j - 1] + val[j])) ? j : idx;
    }
    return idx;
}

inline uint16_t to_half(float f) {
    return f32_to_f16(f);
}
inline float from_half(uint16_t h) {
    return f16_to_f32(h);
}

inline uint16_t load_u16(const uint8_t* p) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
}
inline uint32_t load_u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

// |x| of 8 weights and their sign bits; with `parity`, an odd number of negatives flips the
// least important weight so that 7 stored bits determine all 8 (IQ2_XXS, IQ2_XS, IQ3_XXS).
inline uint8_t split_signs(const float* xb, const float* weight, float* xval, bool parity) {
    int nflip = 0;
    uint8_t s = 0;
    for (int i = 0; i < 8; ++i) {
        if (xb[i] >= 0) {
            xval[i] = xb[i];
        } else {
            xval[i] = -xb[i];
            ++nflip;
            s |= (1 << i);
        }
    }
    if (parity && nflip % 2) {
        int imin = 0;
        float min = weight[0] * xb[0] * xb[0];
        for (int i = 1; i < 8; ++i) {
            const float ax = weight[i] * xb[i] * xb[i];
            if (ax < min) {
                min = ax;
                imin = i;
            }
        }
        xval[imin] = -xval[imin];
        s ^= (1 << imin);
        s &= 127;
    }
    return parity ? (s & 127) : s;
}

// The formats that only exist with importance weights refuse to run without them.
inline void require_importance(const float* importance, const char* type) {
    QL_CHECK(importance != nullptr,
             "quantization type {} needs importance weights (an imatrix); none was given", type);
}

}  // namespace quantlens::kernels::iq
