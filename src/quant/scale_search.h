// Scale searches shared by the legacy and K-quant kernels: given a small group of weights,
// find the integer levels L and the scale (and, for the asymmetric formats, the min) that
// ggml's reference quantizers would choose. The arithmetic, including the order of every
// float operation and the tie-breaking of comparisons, follows ggml so the results are
// bit-identical; any change here changes the bytes of every K-quant file.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "quant/blocks.h"

namespace quantlens::kernels::detail {

// Groups whose largest magnitude is below this are treated as all-zero.
inline constexpr float kGroupMaxEps = 1e-15f;

// Round to nearest, ties to even, via the 1.5*2^23 trick (valid for |x| < 2^22). ggml rounds
// this way (not with roundf) in every K-quant, so ties land on the same side.
inline int nearest_int(float x) {
    const float shifted = x + 12582912.f;
    int32_t bits;
    std::memcpy(&bits, &shifted, sizeof bits);
    return (bits & 0x007fffff) - 0x00400000;
}

// The value of largest magnitude, sign kept (the first one on ties), and that magnitude. ggml's
// symmetric quantizers divide by the signed extreme so that it lands on the most negative
// level, which reaches one step further than the positive side.
struct SignedExtreme {
    float value = 0;      // the x[i] of largest |x[i]|
    float magnitude = 0;  // |value|
};
inline SignedExtreme signed_extreme(const float* x, int n) {
    SignedExtreme e;
    for (int i = 0; i < n; ++i) {
        const float ax = std::fabs(x[i]);
        if (ax > e.magnitude) {
            e.magnitude = ax;
            e.value = x[i];
        }
    }
    return e;
}

// ggml's importance of each of n weights under an imatrix: qw[i] * sqrt(sigma2 + x[i]²), where
// sigma2 is (a multiple of) the block's mean square, so that small weights still count.
inline void imatrix_weights(const float* x, const float* qw, float sigma2, int n, float* weight) {
    for (int i = 0; i < n; ++i) weight[i] = qw[i] * std::sqrt(sigma2 + x[i] * x[i]);
}

// ggml's test of a candidate set of levels: their least-squares scale sumqx/sumq2 explains
// sumqx²/sumq2 of the weighted signal, and they win when that beats the best so far
// (best = scale·sumqx). On a win, sets scale and best and returns true.
inline bool improves_fit(float sumqx, float sumq2, float& best, float& scale) {
    if (!(sumq2 > 0 && sumqx * sumqx > best * sumq2)) return false;
    scale = sumqx / sumq2;
    best = scale * sumqx;
    return true;
}

// Symmetric levels in [-nmax, nmax-1], stored offset by nmax in L (n values). rmse_type 0:
// plain max scaling; 1: weighted least squares with weights qw (or x² when qw is null),
// searching 18 scales around nmax/max; negative: one refinement step only.
// Returns the scale (weight ≈ scale * (L - nmax)).
float make_qx_quants(int n, int nmax, const float* x, int8_t* L, int rmse_type, const float* qw);

// Q3_K's symmetric search: weights x², optional coordinate-descent refinement.
float make_q3_quants(int n, int nmax, const float* x, int8_t* L, bool do_rmse);

// Asymmetric levels in [0, nmax]: weight ≈ scale * L - the_min. Grid search over nstep+1
// candidate scales (rmin + rdelta*is + nmax)/(max - min), each refit by weighted least
// squares; error is weighted |diff| when use_mad, else weighted diff².
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                       float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep,
                       bool use_mad);
// As make_qkx2_quants, with weights = x² when null and guarded level computation (the
// importance-weighted paths of Q4_1, Q5_1, Q2_K, Q4_K, Q5_K).
float make_qkx3_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                       float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep,
                       bool use_mad);

// Non-negative levels in [0, nmax] for the sub-block scales of the importance paths,
// weighted by quant_weights.
float make_qp_quants(int n, int nmax, const float* x, uint8_t* L, const float* quant_weights);

// Q4_K / Q5_K pack 8 six-bit scales and 8 six-bit mins into 12 bytes.
inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}
// Sub-block j's step (super-scale d × its 6-bit scale) and min (dmin × its 6-bit min).
struct StepMin {
    float step, min;
};
inline StepMin step_min_k4(int j, const uint8_t* q, float d, float dmin) {
    uint8_t sc, m;
    get_scale_min_k4(j, q, &sc, &m);
    return {d * sc, dmin * m};
}
inline void set_scale_min_k4(int j, uint8_t ls, uint8_t lm, uint8_t* q) {
    if (j < 4) {
        q[j] = ls;
        q[j + 4] = lm;
    } else {
        q[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
        q[j - 4] |= ((ls >> 4) << 6);
        q[j] |= ((lm >> 4) << 6);
    }
}

}  // namespace quantlens::kernels::detail
