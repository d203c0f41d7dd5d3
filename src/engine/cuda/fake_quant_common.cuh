// Device helpers shared by the fake-quant kernels (fake_quant.cu, fake_quant_iq.cu): ggml's
// rounding, the 16-bit storage rounding of the super-scales, and the reductions over the lanes
// of one super-block. Internal to those files.
#pragma once

#include <cstdint>

#include "engine/cuda/cuda_common.cuh"
#include "engine/cuda/fake_quant.h"

namespace quantlens::cuda::fq {

inline constexpr float kGroupMaxEps = 1e-15f;

// Round to nearest, ties to even, via the 1.5*2^23 trick (quant/iq_common.h's nearest_int).
__device__ __forceinline__ int nearest_int(float x) {
    const float shifted = x + 12582912.f;
    return (__float_as_int(shifted) & 0x007fffff) - 0x00400000;
}

__device__ __forceinline__ int clamp_int(int v, int lo, int hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

__device__ __forceinline__ float round_f16(float x) {
    return __half2float(__float2half_rn(x));
}

// Maximum over the G lanes of a super-block (G divides 32; groups are lane-aligned).
template <int G>
__device__ float group_max(float v) {
#pragma unroll
    for (int o = 1; o < G; o <<= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// The signed value of largest magnitude over the G lanes, the lowest lane winning ties (the
// CPU loop keeps the first strictly larger one).
template <int G>
__device__ float group_max_abs(float v) {
    float a = fabsf(v);
    int idx = threadIdx.x % G;
#pragma unroll
    for (int o = 1; o < G; o <<= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, v, o);
        const float oa = __shfl_xor_sync(0xffffffffu, a, o);
        const int oi = __shfl_xor_sync(0xffffffffu, idx, o);
        if (oa > a || (oa == a && oi < idx)) v = ov, a = oa, idx = oi;
    }
    return a > 0 ? v : 0.0f;  // the CPU starts from 0 and needs a strictly larger magnitude
}

// x[0..N) ← the g-th group of N values (zeros for an invalid lane, which still joins the
// shuffles).
template <typename T, int N>
__device__ void load(const T* src, int64_t g, bool valid, float* x) {
    const T* s = src + (valid ? g : 0) * N;
#pragma unroll
    for (int i = 0; i < N; ++i) x[i] = valid ? to_f32(s[i]) : 0.0f;
}

// Σ x² over the G·N values of a super-block held N per lane, added in the CPU's order (lane 0's
// values first, each lane's in index order): a chain through the lanes, not a tree, so the
// float sum is the CPU's block_sum_x2 / sigma² bit for bit. Every lane returns the total.
template <int G, int N>
__device__ float group_serial_sum_x2(const float* x) {
    const int lane = threadIdx.x % 32;
    const int base = lane - lane % G;
    float run = 0;
#pragma unroll 1
    for (int k = 0; k < G; ++k) {
        float mine = run;
        if (lane - base == k) {
#pragma unroll
            for (int i = 0; i < N; ++i) mine += x[i] * x[i];
        }
        run = __shfl_sync(0xffffffffu, mine, base + k);
    }
    return run;
}

// out[k] ← v of lane k of this lane's G-lane group (every lane gets the whole group).
template <int G>
__device__ void group_gather(float v, float* out) {
    const int lane = threadIdx.x % 32;
    const int base = lane - lane % G;
#pragma unroll
    for (int k = 0; k < G; ++k) out[k] = __shfl_sync(0xffffffffu, v, base + k);
}

// Per-column importance (fake_quant.h's FakeQuantImportance): the N weights of group g start
// at element g·N; their importance is entry (element / mat_elems)·n_per_row + element %
// n_per_row, N consecutive columns (N divides n_per_row). Zeros for an invalid lane.
using Importance = FakeQuantImportance;

template <int N>
__device__ void load_importance(const Importance& imp, int64_t g, bool valid, float* qw) {
    const int64_t e = (valid ? g : 0) * N;
    const float* s = imp.values + (e / imp.mat_elems) * imp.n_per_row + e % imp.n_per_row;
#pragma unroll
    for (int i = 0; i < N; ++i) qw[i] = valid ? s[i] : 0.0f;
}

}  // namespace quantlens::cuda::fq
