// The tap reductions of TapReducer (cuda_stats.h); shapes and contracts in cuda_stats_kernels.h.
//
// Numerics follow the CPU's ChannelMoments::add and ActivationCollector's LayerOutput branch
// (analysis/measure/activation_stats.cpp) operation by operation: each value widened to
// double, v² then v²·v and v²·v², |v − μ| > 6σ compared in double. Built with --fmad=false
// (CMakeLists.txt) so no multiply-add is contracted, as in the CPU build.
#include <algorithm>

#include "engine/cuda/cuda_common.cuh"
#include "engine/cuda/cuda_reduce.cuh"
#include "engine/cuda/cuda_stats_kernels.h"

namespace quantlens::cuda {
namespace {

constexpr int kThreads = 256;

__device__ unsigned long long block_max(unsigned long long v) {
    __shared__ unsigned long long part[32];
    const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
    for (int o = kWarp / 2; o > 0; o >>= 1) {
        const unsigned long long w = __shfl_xor_sync(0xffffffffu, v, o);
        v = w > v ? w : v;
    }
    __syncthreads();
    if (lane == 0) part[warp] = v;
    __syncthreads();
    const int n_warps = blockDim.x / kWarp;
    unsigned long long t = lane < n_warps ? part[lane] : 0ull;
    for (int o = kWarp / 2; o > 0; o >>= 1) {
        const unsigned long long w = __shfl_xor_sync(0xffffffffu, t, o);
        t = w > t ? w : t;
    }
    return t;
}

template <typename T>
__device__ inline float load_value(const void* x, int64_t i) {
    return to_f32(static_cast<const T*>(x)[i]);
}

// part[(chunk · 6 + k) · cols + j]: sums k = 0..4 of channel j over the chunk's rows, k = 5 the
// float max |x| (held exactly as a double).
template <typename T>
__global__ void moments_partials_k(const void* x, int64_t rows, int64_t cols,
                                   int64_t rows_per_chunk, double* part) {
    const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (j >= cols) return;
    const int64_t chunk = blockIdx.y;
    const int64_t r0 = chunk * rows_per_chunk;
    const int64_t r1 = min(rows, r0 + rows_per_chunk);
    double a1 = 0, a2 = 0, a3 = 0, a4 = 0, aa = 0;
    float mx = 0;
    for (int64_t r = r0; r < r1; ++r) {
        const float f = load_value<T>(x, r * cols + j);
        const double v = f;
        const double v2 = v * v;
        a1 += v;
        a2 += v2;
        a3 += v2 * v;
        a4 += v2 * v2;
        aa += fabs(v);
        mx = fmaxf(mx, fabsf(f));
    }
    double* p = part + chunk * (kMomentSums + 1) * cols + j;
    p[0 * cols] = a1;
    p[1 * cols] = a2;
    p[2 * cols] = a3;
    p[3 * cols] = a4;
    p[4 * cols] = aa;
    p[5 * cols] = mx;
}

// acc[k][j] += Σ_chunk part[chunk][k][j] (chunks in order), acc_max[j] = max(...).
__global__ void moments_fold_k(const double* part, int64_t n_chunks, int64_t cols, double* acc,
                               float* acc_max) {
    const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (j >= cols) return;
    double s[kMomentSums] = {0, 0, 0, 0, 0};
    float mx = 0;
    for (int64_t c = 0; c < n_chunks; ++c) {
        const double* p = part + c * (kMomentSums + 1) * cols + j;
        for (int k = 0; k < kMomentSums; ++k) s[k] += p[k * cols];
        mx = fmaxf(mx, static_cast<float>(p[kMomentSums * cols]));
    }
    for (int k = 0; k < kMomentSums; ++k) acc[k * cols + j] += s[k];
    acc_max[j] = fmaxf(acc_max[j], mx);
}

// mu_thr = {μ, 6σ} of every value so far, from Σ_j s1 and Σ_j s2 (one block, fixed order).
__global__ void moments_sigma_k(const double* acc, int64_t cols, double n_values, double* mu_thr) {
    double a = 0, b = 0;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
        a += acc[j];
        b += acc[cols + j];
    }
    a = block_sum(a);
    b = block_sum(b);
    if (threadIdx.x == 0) {
        const double mu = a / n_values;
        const double var = b / n_values - mu * mu;
        mu_thr[0] = mu;
        mu_thr[1] = 6 * sqrt(var > 0 ? var : 0.0);
    }
}

template <typename T>
__global__ void count_beyond_k(const void* x, int64_t n, const double* mu_thr,
                               unsigned long long* count) {
    const double mu = mu_thr[0], thr = mu_thr[1];
    unsigned long long c = 0;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += stride) {
        const double v = load_value<T>(x, i);
        c += fabs(v - mu) > thr ? 1 : 0;
    }
    c = block_sum(c);
    if (threadIdx.x == 0 && c) atomicAdd(count, c);
}

// Per block Σ|h| into partials[block]; the largest (|h|, −index) packed into *best.
__global__ void hidden_partials_k(const float* h, int64_t n, double* partials,
                                  unsigned long long* best) {
    double s = 0;
    unsigned long long m = 0;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += stride) {
        const float a = fabsf(h[i]);
        s += a;
        if (a == a) {  // NaN never wins a comparison on the CPU either
            // Non-negative floats order as their bits; ties go to the lowest index.
            const unsigned long long key =
                (static_cast<unsigned long long>(__float_as_uint(a)) << 32) |
                (0xffffffffull - static_cast<unsigned long long>(i));
            m = key > m ? key : m;
        }
    }
    s = block_sum(s);
    m = block_max(m);
    if (threadIdx.x == 0) {
        partials[blockIdx.x] = s;
        atomicMax(best, m);
    }
}

__global__ void hidden_fold_k(const double* partials, unsigned long long* best, int64_t cols,
                              double* sum_abs, float* max_abs, int64_t* max_channel) {
    const double t = block_sum(partials[threadIdx.x]);  // blockDim.x == kHiddenPartials
    if (threadIdx.x != 0) return;
    *sum_abs += t;
    const unsigned long long key = *best;
    const float v = __uint_as_float(static_cast<unsigned>(key >> 32));
    if (key != 0 && v > *max_abs) {
        *max_abs = v;
        *max_channel = static_cast<int64_t>(0xffffffffull - (key & 0xffffffffull)) % cols;
    }
    *best = 0;
}

__global__ void add_upper_k(double* acc, const float* prod, int64_t n) {
    const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    for (int64_t i = blockIdx.y; i < n; i += gridDim.y)
        if (j >= i && j < n) acc[i * n + j] += prod[i * n + j];
}

}  // namespace

void launch_moments_add(const void* x, bool f32, Dtype dt, int64_t rows, int64_t cols,
                        double* partials, double* acc, float* acc_max, double* mu_thr,
                        double n_values, unsigned long long* n_beyond) {
    if (rows <= 0 || cols <= 0) return;
    const int64_t n_chunks = std::min<int64_t>(kMomentChunks, (rows + 63) / 64);
    const int64_t per_chunk = (rows + n_chunks - 1) / n_chunks;
    const dim3 grid(grid_for(cols, kThreads), static_cast<unsigned>(n_chunks));
    QL_DISPATCH(f32 ? Dtype::F32 : dt,
                (moments_partials_k<T><<<grid, kThreads>>>(x, rows, cols, per_chunk, partials)));
    moments_fold_k<<<grid_for(cols, kThreads), kThreads>>>(partials, n_chunks, cols, acc, acc_max);
    QL_CUDA_LAUNCH();
    moments_sigma_k<<<1, 1024>>>(acc, cols, n_values, mu_thr);
    QL_CUDA_LAUNCH();
    const int64_t n = rows * cols;
    QL_DISPATCH(
        f32 ? Dtype::F32 : dt,
        (count_beyond_k<T><<<grid_for(n, kThreads, 1024), kThreads>>>(x, n, mu_thr, n_beyond)));
}

void launch_hidden_add(const float* h, int64_t rows, int64_t cols, double* partials,
                       unsigned long long* best, double* sum_abs, float* max_abs,
                       int64_t* max_channel) {
    if (rows <= 0 || cols <= 0) return;
    hidden_partials_k<<<kHiddenPartials, kThreads>>>(h, rows * cols, partials, best);
    QL_CUDA_LAUNCH();
    hidden_fold_k<<<1, kHiddenPartials>>>(partials, best, cols, sum_abs, max_abs, max_channel);
    QL_CUDA_LAUNCH();
}

void launch_add_upper(double* acc, const float* prod, int64_t n) {
    if (n <= 0) return;
    const dim3 grid(grid_for(n, kThreads), static_cast<unsigned>(std::min<int64_t>(n, 65535)));
    add_upper_k<<<grid, kThreads>>>(acc, prod, n);
    QL_CUDA_LAUNCH();
}

}  // namespace quantlens::cuda
