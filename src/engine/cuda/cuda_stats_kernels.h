// Launchers of the tap reductions (cuda_stats.cu) behind TapReducer (cuda_stats.h), with plain
// C++ signatures. Data pointers are device pointers; `Dtype` names the 16-bit type of inputs
// declared void* when f32 is false. All launches go to the default stream. Deterministic: fixed
// grids and reduction orders; the only atomics are on 64-bit integers.
#pragma once

#include <cstdint>

#include "engine/cuda/cuda_kernels.h"

namespace quantlens::cuda {

// Channel moments, layout of the device accumulator `acc` (doubles): [kMomentSums][cols] for
// s1, s2, s3, s4, sabs, then the float max_abs[cols] in `acc_max`.
constexpr int64_t kMomentSums = 5;
// Rows of one tap are cut into at most this many chunks, summed per chunk then in order.
constexpr int64_t kMomentChunks = 64;
// Doubles of the partial-sum scratch for a tap of `cols` columns.
constexpr int64_t moment_partial_doubles(int64_t cols) {
    return kMomentChunks * (kMomentSums + 1) * cols;  // the +1 holds the floats' maxima
}
// Adds x[rows, cols] (f32, or 16-bit of type dt) into acc / acc_max and counts into *n_beyond
// the values with |x − μ| > 6σ, μ and σ of every value of the accumulator after this add
// (n_values = all rows so far including these, times cols). `partials` holds
// moment_partial_doubles(cols) doubles; `mu_thr` 2 doubles of scratch.
void launch_moments_add(const void* x, bool f32, Dtype dt, int64_t rows, int64_t cols,
                        double* partials, double* acc, float* acc_max, double* mu_thr,
                        double n_values, unsigned long long* n_beyond);

// Layer hidden statistics of h[rows, cols] (f32): acc[0] += Σ|h| (fixed order), and where the
// largest |h| of these rows is strictly above *max_abs, *max_abs and *max_channel take it and
// the channel of its first (row-major) occurrence. `partials` holds kHiddenPartials doubles,
// `best` one 64-bit integer of scratch. rows·cols < 2^32.
constexpr int64_t kHiddenPartials = 256;
void launch_hidden_add(const float* h, int64_t rows, int64_t cols, double* partials,
                       unsigned long long* best, double* sum_abs, float* max_abs,
                       int64_t* max_channel);

// acc[i·n + j] += prod[i·n + j] for j ≥ i (n × n, f64 += f32).
void launch_add_upper(double* acc, const float* prod, int64_t n);

}  // namespace quantlens::cuda
