// GPU fake quantization: see fake_quant.h. One thread per sub-block (16 or 32 weights, held in
// registers); the super-block maxima are shuffles within the 8 or 16 lanes of a super-block.
// Every expression keeps the operand order of quant/scale_search.cpp and quant/kquants.cpp,
// and this file is compiled with --fmad=false, so the levels match the CPU bit for bit on the
// same input.
#include "engine/cuda/cuda_common.cuh"
#include "engine/cuda/fake_quant.h"
#include "engine/cuda/fake_quant_common.cuh"
#include "engine/cuda/fake_quant_iq.h"

namespace quantlens::cuda {
namespace {

using namespace fq;

// make_qkx2_quants (scale_search.cpp) for N weights.
template <int N>
__device__ float make_qkx2(int nmax, const float* x, const float* weights, uint8_t* L,
                           float* the_min, float rmin, float rdelta, int nstep, bool use_mad) {
    float min = x[0];
    float max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
#pragma unroll
    for (int i = 1; i < N; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
#pragma unroll
        for (int i = 0; i < N; ++i) L[i] = 0;
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
#pragma unroll
    for (int i = 0; i < N; ++i) {
        const int l = nearest_int(iscale * (x[i] - min));
        L[i] = static_cast<uint8_t>(clamp_int(l, 0, nmax));
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    uint8_t Laux[N];
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
#pragma unroll
        for (int i = 0; i < N; ++i) {
            const int l = clamp_int(nearest_int(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = static_cast<uint8_t>(l);
            const float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
#pragma unroll
            for (int i = 0; i < N; ++i) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
#pragma unroll
                for (int i = 0; i < N; ++i) L[i] = Laux[i];
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

// make_qx_quants with rmse_type 1: weights qw, or x² without importance (Q6_K's sub-block
// search; Q3_K's with importance, over 16 weights and over the 16 sub-block scales).
template <int N>
__device__ float make_qx(int nmax, const float* x, int8_t* L, const float* qw = nullptr) {
    float max = 0;
    float amax = 0;
#pragma unroll
    for (int i = 0; i < N; ++i) {
        const float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < kGroupMaxEps) {
#pragma unroll
        for (int i = 0; i < N; ++i) L[i] = 0;
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0;
    float suml2 = 0;
#pragma unroll
    for (int i = 0; i < N; ++i) {
        const int l = clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = static_cast<int8_t>(l + nmax);
        const float w = qw ? qw[i] : x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
#pragma unroll
        for (int i = 0; i < N; ++i) {
            const int l = clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1);
            const float w = qw ? qw[i] : x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
#pragma unroll
            for (int i = 0; i < N; ++i) {
                const int l = nearest_int(iscale * x[i]);
                L[i] = static_cast<int8_t>(nmax + clamp_int(l, -nmax, nmax - 1));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

// make_qkx3_quants (scale_search.cpp) for N weights with the importance path's weights.
template <int N>
__device__ float make_qkx3(int nmax, const float* x, const float* weights, uint8_t* L,
                           float* the_min, float rmin, float rdelta, int nstep) {
    float min = x[0];
    float max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
#pragma unroll
    for (int i = 1; i < N; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max <= min) {
#pragma unroll
        for (int i = 0; i < N; ++i) L[i] = 0;
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
#pragma unroll
    for (int i = 0; i < N; ++i) {
        const int l = nearest_int(iscale * (x[i] - min));
        L[i] = static_cast<uint8_t>(clamp_int(l, 0, nmax));
        const float diff = scale * L[i] + min - x[i];
        best_error += weights[i] * (diff * diff);
    }
    const float fmax_level = static_cast<float>(nmax);
    uint8_t Laux[N];
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
#pragma unroll
        for (int i = 0; i < N; ++i) {
            const float v = iscale * (x[i] - min);
            const int l = v > 0 ? nearest_int(v < fmax_level ? v : fmax_level) : 0;
            Laux[i] = static_cast<uint8_t>(l);
            const float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
#pragma unroll
            for (int i = 0; i < N; ++i) {
                const float diff = this_scale * Laux[i] + this_min - x[i];
                cur_error += weights[i] * (diff * diff);
            }
            if (cur_error < best_error) {
#pragma unroll
                for (int i = 0; i < N; ++i) L[i] = Laux[i];
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

// make_qp_quants (scale_search.cpp): the super-block fit of N sub-block scales or mins under
// their importance sums. Every lane of a super-block runs it on the same gathered inputs.
template <int N>
__device__ float make_qp(int nmax, const float* x, uint8_t* L, const float* quant_weights) {
    float max = 0;
#pragma unroll
    for (int i = 0; i < N; ++i) max = max > x[i] ? max : x[i];
    if (max < kGroupMaxEps) {
#pragma unroll
        for (int i = 0; i < N; ++i) L[i] = 0;
        return 0.f;
    }
    float iscale = nmax / max;
#pragma unroll
    for (int i = 0; i < N; ++i) L[i] = static_cast<uint8_t>(nearest_int(iscale * x[i]));
    const float scale = 1 / iscale;
    float best_mse = 0;
#pragma unroll
    for (int i = 0; i < N; ++i) {
        const float diff = x[i] - scale * L[i];
        best_mse += quant_weights[i] * diff * diff;
    }
    for (int is = -4; is <= 4; ++is) {
        if (is == 0) continue;
        const float iscale_is = (0.1f * is + nmax) / max;
        const float scale_is = 1 / iscale_is;
        float mse = 0;
#pragma unroll
        for (int i = 0; i < N; ++i) {
            int l = nearest_int(iscale_is * x[i]);
            l = l < nmax ? l : nmax;
            const float diff = x[i] - scale_is * l;
            mse += quant_weights[i] * diff * diff;
        }
        if (mse < best_mse) {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    float sumlx = 0;
    float suml2 = 0;
#pragma unroll
    for (int i = 0; i < N; ++i) {
        int l = nearest_int(iscale * x[i]);
        l = l < nmax ? l : nmax;
        L[i] = static_cast<uint8_t>(l);
        const float w = quant_weights[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
#pragma unroll
        for (int i = 0; i < N; ++i) {
            const float w = quant_weights[i];
            float slx = sumlx - w * x[i] * L[i];
            float sl2 = suml2 - w * L[i] * L[i];
            if (slx > 0 && sl2 > 0) {
                int new_l = nearest_int(x[i] * sl2 / slx);
                new_l = new_l < nmax ? new_l : nmax;
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = static_cast<uint8_t>(new_l);
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// make_q3_quants with do_rmse (Q3_K's sub-block search); L offset by nmax on return.
template <int N>
__device__ float make_q3(int nmax, const float* x, int8_t* L) {
    float max = 0;
    float amax = 0;
#pragma unroll
    for (int i = 0; i < N; ++i) {
        const float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < kGroupMaxEps) {
#pragma unroll
        for (int i = 0; i < N; ++i) L[i] = 0;
        return 0.f;
    }
    const float iscale = -nmax / max;
    float sumlx = 0;
    float suml2 = 0;
#pragma unroll
    for (int i = 0; i < N; ++i) {
        const int l = clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = static_cast<int8_t>(l);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
#pragma unroll
        for (int i = 0; i < N; ++i) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                const int new_l = clamp_int(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = static_cast<int8_t>(new_l);
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
#pragma unroll
    for (int i = 0; i < N; ++i) L[i] = static_cast<int8_t>(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// ---- Q8_0: one thread per 32-weight block ----
template <typename T>
__global__ void q8_0_k(const T* src, T* dst, int64_t n_blocks) {
    const int64_t g = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    if (g >= n_blocks) return;
    float x[32];
    load<T, 32>(src, g, true, x);
    float amax = 0.0f;
#pragma unroll
    for (int j = 0; j < 32; ++j) amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
    const float d = amax / 127;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    const float dq = round_f16(d);
    T* o = dst + g * 32;
#pragma unroll
    for (int j = 0; j < 32; ++j) {
        const auto q = static_cast<int8_t>(roundf(x[j] * id));
        o[j] = from_f32<T>(static_cast<float>(q) * dq);
    }
}

// ---- Q4_K / Q5_K: 8 lanes per super-block, one 32-weight sub-block each ----
template <typename T, int NMAX>
__global__ void q45_K_k(const T* src, T* dst, int64_t n_sub, float rmin, float rdelta, int nstep) {
    const int64_t g = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    const bool valid = g < n_sub;  // invalid lanes still join the shuffles
    float x[32], w[32];
    load<T, 32>(src, g, valid, x);
    float sum_x2 = 0;
#pragma unroll
    for (int l = 0; l < 32; ++l) sum_x2 += x[l] * x[l];
    const float av_x = sqrtf(sum_x2 / 32);
#pragma unroll
    for (int l = 0; l < 32; ++l) w[l] = av_x + fabsf(x[l]);
    uint8_t L[32];
    float mn;
    const float sc = make_qkx2<32>(NMAX, x, w, L, &mn, rmin, rdelta, nstep, false);
    const float max_scale = group_max<8>(fmaxf(sc, 0.0f));
    const float max_min = group_max<8>(fmaxf(mn, 0.0f));
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    auto ls = static_cast<uint8_t>(nearest_int(inv_scale * sc));
    auto lm = static_cast<uint8_t>(nearest_int(inv_min * mn));
    ls = ls < 63 ? ls : 63;
    lm = lm < 63 ? lm : 63;
    const float dall = round_f16(max_scale / 63.f);
    const float dmin = round_f16(max_min / 63.f);
    if (!valid) return;
    const float d = dall * ls;
    const float dm = dmin * lm;
    if (d != 0) {
#pragma unroll
        for (int i = 0; i < 32; ++i)
            L[i] = static_cast<uint8_t>(clamp_int(nearest_int((x[i] + dm) / d), 0, NMAX));
    }
    T* o = dst + g * 32;
#pragma unroll
    for (int i = 0; i < 32; ++i) o[i] = from_f32<T>(d * static_cast<float>(L[i]) - dm);
}

// ---- Q2_K: 16 lanes per super-block, one 16-weight sub-block each ----
template <typename T>
__global__ void q2_K_k(const T* src, T* dst, int64_t n_sub) {
    const int64_t g = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    const bool valid = g < n_sub;
    float x[16], w[16];
    load<T, 16>(src, g, valid, x);
#pragma unroll
    for (int l = 0; l < 16; ++l) w[l] = fabsf(x[l]);
    uint8_t L[16];
    float mn;
    const float sc = make_qkx2<16>(3, x, w, L, &mn, -0.5f, 0.1f, 15, true);
    const float max_scale = group_max<16>(fmaxf(sc, 0.0f));
    const float max_min = group_max<16>(fmaxf(mn, 0.0f));
    const float q4scale = 15.f;
    uint8_t byte = 0;
    float dall = 0.0f, dmin = 0.0f;
    if (max_scale > 0) {
        const float iscale = q4scale / max_scale;
        byte = static_cast<uint8_t>(nearest_int(iscale * sc));
        dall = round_f16(max_scale / q4scale);
    }
    if (max_min > 0) {
        const float iscale = q4scale / max_min;
        byte |= static_cast<uint8_t>(nearest_int(iscale * mn) << 4);
        dmin = round_f16(max_min / q4scale);
    }
    if (!valid) return;
    const float d = dall * (byte & 0xF);
    const float dm = dmin * (byte >> 4);
    if (d != 0) {
#pragma unroll
        for (int i = 0; i < 16; ++i)
            L[i] = static_cast<uint8_t>(clamp_int(nearest_int((x[i] + dm) / d), 0, 3));
    }
    T* o = dst + g * 16;
#pragma unroll
    for (int i = 0; i < 16; ++i) o[i] = from_f32<T>(d * static_cast<float>(L[i]) - dm);
}

// ---- Q3_K: 16 lanes per super-block ----
template <typename T>
__global__ void q3_K_k(const T* src, T* dst, int64_t n_sub) {
    const int64_t g = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    const bool valid = g < n_sub;
    float x[16];
    load<T, 16>(src, g, valid, x);
    int8_t L[16];
    const float sc = make_q3<16>(4, x, L);
    const float max_scale = group_max_abs<16>(sc);
    int stored = 0;  // the 6-bit scale as unpacked (stored − 32)
    float dall = 0.0f;
    if (max_scale != 0) {
        const float iscale = -32.f / max_scale;
        auto l = static_cast<int8_t>(nearest_int(iscale * sc));
        l = static_cast<int8_t>(clamp_int(l, -32, 31) + 32);
        stored = l - 32;
        dall = round_f16(1 / iscale);
    } else {
        stored = -32;
    }
    if (!valid) return;
    const float d = dall * static_cast<int8_t>(stored);
    if (d != 0) {
#pragma unroll
        for (int i = 0; i < 16; ++i)
            L[i] = static_cast<int8_t>(clamp_int(nearest_int(x[i] / d), -4, 3) + 4);
    }
    T* o = dst + g * 16;
#pragma unroll
    for (int i = 0; i < 16; ++i) o[i] = from_f32<T>(d * static_cast<float>(L[i] - 4));
}

// ---- Q6_K: 16 lanes per super-block ----
// With importance the sub-block search weighs by the imatrix directly (quant/kquants.cpp).
template <typename T>
__global__ void q6_K_k(const T* src, T* dst, int64_t n_sub, Importance imp) {
    const int64_t g = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    const bool valid = g < n_sub;
    float x[16], qw[16];
    load<T, 16>(src, g, valid, x);
    if (imp.values) load_importance<16>(imp, g, valid, qw);
    int8_t L[16];
    const float sc = make_qx<16>(32, x, L, imp.values ? qw : nullptr);
    const float max_scale = group_max_abs<16>(sc);
    if (!valid) return;
    T* o = dst + g * 16;
    if (fabsf(max_scale) < kGroupMaxEps) {
#pragma unroll
        for (int i = 0; i < 16; ++i) o[i] = from_f32<T>(0.0f);
        return;
    }
    const float iscale = -128.f / max_scale;
    const float dall = round_f16(1 / iscale);
    const int s = nearest_int(iscale * sc);
    const auto sc8 = static_cast<int8_t>(s < 127 ? s : 127);
    const float d = dall * sc8;
    if (d != 0) {
#pragma unroll
        for (int i = 0; i < 16; ++i)
            L[i] = static_cast<int8_t>(clamp_int(nearest_int(x[i] / d), -32, 31) + 32);
    }
#pragma unroll
    for (int i = 0; i < 16; ++i) o[i] = from_f32<T>(d * static_cast<float>(L[i] - 32));
}

// ---- The importance (imatrix) paths of quant/kquants.cpp: sub-block weights
// qw·sqrt(σ² + x²) with σ² from the whole super-block, then the sub-block scales and mins
// fitted together by make_qp_quants (Q2_K, Q4_K, Q5_K) or make_qx_quants (Q3_K). ----

// Q4_K / Q5_K (qk_fit_imat): 8 lanes per super-block.
template <typename T, int NMAX>
__global__ void q45_K_imat_k(const T* src, T* dst, int64_t n_sub, Importance imp) {
    const int64_t g = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    const bool valid = g < n_sub;
    float x[32], w[32];
    load<T, 32>(src, g, valid, x);
    load_importance<32>(imp, g, valid, w);
    const float sigma2 = 2 * group_serial_sum_x2<8, 32>(x) / 256;
#pragma unroll
    for (int l = 0; l < 32; ++l) w[l] = w[l] * sqrtf(sigma2 + x[l] * x[l]);
    float sumw = 0;
#pragma unroll
    for (int l = 0; l < 32; ++l) sumw += w[l];
    uint8_t L[32];
    float mn;
    const float sc = make_qkx3<32>(NMAX, x, w, L, &mn, -0.9f, 0.05f, 36);
    float scales[8], mins[8], sw[8];
    group_gather<8>(sc, scales);
    group_gather<8>(mn, mins);
    group_gather<8>(sumw, sw);
    uint8_t Ls[8], Lm[8];
    const float d_block = make_qp<8>(63, scales, Ls, sw);
    const float m_block = make_qp<8>(63, mins, Lm, sw);
    if (!valid) return;
    const int j = threadIdx.x % 8;
    const int ls = Ls[j] < 63 ? Ls[j] : 63;
    const int lm = Lm[j] < 63 ? Lm[j] : 63;
    const float d = round_f16(d_block) * ls;
    const float dm = round_f16(m_block) * lm;
    if (d != 0) {
#pragma unroll
        for (int i = 0; i < 32; ++i)
            L[i] = static_cast<uint8_t>(clamp_int(nearest_int((x[i] + dm) / d), 0, NMAX));
    }
    T* o = dst + g * 32;
#pragma unroll
    for (int i = 0; i < 32; ++i) o[i] = from_f32<T>(d * static_cast<float>(L[i]) - dm);
}

// Q2_K (q2_K_block_imat): 16 lanes per super-block.
template <typename T>
__global__ void q2_K_imat_k(const T* src, T* dst, int64_t n_sub, Importance imp) {
    const int64_t g = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    const bool valid = g < n_sub;
    float x[16], w[16];
    load<T, 16>(src, g, valid, x);
    load_importance<16>(imp, g, valid, w);
    const float sigma2 = group_serial_sum_x2<16, 16>(x) / 256;
#pragma unroll
    for (int l = 0; l < 16; ++l) w[l] = w[l] * sqrtf(sigma2 + x[l] * x[l]);
    float sumw = 0;
#pragma unroll
    for (int l = 0; l < 16; ++l) sumw += w[l];
    uint8_t L[16];
    float mn;
    const float sc = make_qkx3<16>(3, x, w, L, &mn, -0.9f, 0.05f, 36);
    float scales[16], mins[16], sw[16];
    group_gather<16>(sc, scales);
    group_gather<16>(mn, mins);
    group_gather<16>(sumw, sw);
    uint8_t Ls[16], Lm[16];
    const float dm_block = make_qp<16>(15, scales, Ls, sw);
    const float mm_block = make_qp<16>(15, mins, Lm, sw);
    if (!valid) return;
    const int j = threadIdx.x % 16;
    const auto byte = static_cast<uint8_t>(Ls[j] | (Lm[j] << 4));
    const float d = round_f16(dm_block) * (byte & 0xF);
    const float dm = round_f16(mm_block) * (byte >> 4);
    if (d != 0) {
#pragma unroll
        for (int i = 0; i < 16; ++i)
            L[i] = static_cast<uint8_t>(clamp_int(nearest_int((x[i] + dm) / d), 0, 3));
    }
    T* o = dst + g * 16;
#pragma unroll
    for (int i = 0; i < 16; ++i) o[i] = from_f32<T>(d * static_cast<float>(L[i]) - dm);
}

// Q3_K (q3_K_block_imat): 16 lanes per super-block.
template <typename T>
__global__ void q3_K_imat_k(const T* src, T* dst, int64_t n_sub, Importance imp) {
    const int64_t g = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    const bool valid = g < n_sub;
    float x[16], w[16];
    load<T, 16>(src, g, valid, x);
    load_importance<16>(imp, g, valid, w);
    const float sigma2 = 2 * group_serial_sum_x2<16, 16>(x) / 256;
#pragma unroll
    for (int l = 0; l < 16; ++l) w[l] = w[l] * sqrtf(sigma2 + x[l] * x[l]);
    float sumw = 0;
#pragma unroll
    for (int l = 0; l < 16; ++l) sumw += w[l];
    int8_t L[16];
    const float sc = make_qx<16>(4, x, L, w);
    float scales[16], sw[16];
    group_gather<16>(sc, scales);
    group_gather<16>(sumw, sw);
    int8_t Ls[16];
    const float d_block = make_qx<16>(32, scales, Ls, sw);
    if (!valid) return;
    const int stored = Ls[threadIdx.x % 16] - 32;  // q3_K_pack_scale / q3_K_unpack_scale
    const float d = round_f16(d_block) * static_cast<int8_t>(stored);
    if (d != 0) {
#pragma unroll
        for (int i = 0; i < 16; ++i)
            L[i] = static_cast<int8_t>(clamp_int(nearest_int(x[i] / d), -4, 3) + 4);
    }
    T* o = dst + g * 16;
#pragma unroll
    for (int i = 0; i < 16; ++i) o[i] = from_f32<T>(d * static_cast<float>(L[i] - 4));
}

template <typename T>
void launch_typed(GgmlType type, const T* src, T* dst, int64_t n, const Importance& imp) {
    constexpr int kThreads = 256;
    // Q8_0 has no importance path in ggml (quantize_q8_0 ignores the imatrix), so neither here.
    const bool with_imp = imp.values != nullptr;
    switch (type) {
        case GgmlType::Q8_0:
            q8_0_k<T><<<grid_for(n / 32, kThreads, INT32_MAX), kThreads>>>(src, dst, n / 32);
            break;
        case GgmlType::Q4_K:
            if (with_imp)
                q45_K_imat_k<T, 15>
                    <<<grid_for(n / 32, kThreads, INT32_MAX), kThreads>>>(src, dst, n / 32, imp);
            else
                q45_K_k<T, 15><<<grid_for(n / 32, kThreads, INT32_MAX), kThreads>>>(
                    src, dst, n / 32, -1.f, 0.1f, 20);
            break;
        case GgmlType::Q5_K:
            if (with_imp)
                q45_K_imat_k<T, 31>
                    <<<grid_for(n / 32, kThreads, INT32_MAX), kThreads>>>(src, dst, n / 32, imp);
            else
                q45_K_k<T, 31><<<grid_for(n / 32, kThreads, INT32_MAX), kThreads>>>(
                    src, dst, n / 32, -0.5f, 0.1f, 15);
            break;
        case GgmlType::Q2_K:
            if (with_imp)
                q2_K_imat_k<T>
                    <<<grid_for(n / 16, kThreads, INT32_MAX), kThreads>>>(src, dst, n / 16, imp);
            else
                q2_K_k<T><<<grid_for(n / 16, kThreads, INT32_MAX), kThreads>>>(src, dst, n / 16);
            break;
        case GgmlType::Q3_K:
            if (with_imp)
                q3_K_imat_k<T>
                    <<<grid_for(n / 16, kThreads, INT32_MAX), kThreads>>>(src, dst, n / 16, imp);
            else
                q3_K_k<T><<<grid_for(n / 16, kThreads, INT32_MAX), kThreads>>>(src, dst, n / 16);
            break;
        case GgmlType::Q6_K:
            q6_K_k<T><<<grid_for(n / 16, kThreads, INT32_MAX), kThreads>>>(src, dst, n / 16, imp);
            break;
        case GgmlType::IQ4_XS:
            launch_fake_quant_iq4_xs(src, dst, n, imp);  // fake_quant_iq.cu
            return;
        case GgmlType::IQ3_S:
            launch_fake_quant_iq3_s(src, dst, n, imp);
            return;
        default:
            check_cuda(cudaErrorInvalidValue, "launch_fake_quant: type without a GPU kernel");
    }
    QL_CUDA_LAUNCH();
}

}  // namespace

bool gpu_fake_quant_supported(GgmlType type, int64_t n_per_row) {
    switch (type) {
        case GgmlType::Q8_0:
            return n_per_row % 32 == 0;
        case GgmlType::Q2_K:
        case GgmlType::Q3_K:
        case GgmlType::Q4_K:
        case GgmlType::Q5_K:
        case GgmlType::Q6_K:
        case GgmlType::IQ4_XS:
        case GgmlType::IQ3_S:
            return n_per_row % 256 == 0;
        default:
            return false;
    }
}

void launch_fake_quant(GgmlType type, const void* src, void* dst, Dtype dt, int64_t n,
                       const FakeQuantImportance* importance) {
    if (!gpu_fake_quant_supported(type, n))
        check_cuda(cudaErrorInvalidValue, "launch_fake_quant: unsupported type or length");
    Importance imp;
    if (importance && type != GgmlType::Q8_0) {
        if (importance->n_per_row <= 0 || importance->n_per_row % 256 != 0 ||
            importance->mat_elems <= 0 || importance->mat_elems % importance->n_per_row != 0 ||
            n % importance->mat_elems != 0)
            check_cuda(cudaErrorInvalidValue, "launch_fake_quant: bad importance layout");
        imp = *importance;
    }
    if (dt == Dtype::BF16) {
        launch_typed(type, static_cast<const __nv_bfloat16*>(src), static_cast<__nv_bfloat16*>(dst),
                     n, imp);
    } else if (dt == Dtype::F16) {
        launch_typed(type, static_cast<const __half*>(src), static_cast<__half*>(dst), n, imp);
    } else {
        launch_typed(type, static_cast<const float*>(src), static_cast<float*>(dst), n, imp);
    }
}

}  // namespace quantlens::cuda
