// Warp and block reductions shared by ql_cuda's kernels (cuda_kernels.cu, cuda_stats.cu). The
// order is a fixed tree (xor shuffles, then one warp over the per-warp partials), so results are
// deterministic for a given block size. Device code only.
#pragma once

namespace quantlens::cuda {

constexpr int kWarp = 32;

template <typename V>
__device__ V warp_sum(V v) {
    for (int o = kWarp / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ inline float warp_max(float v) {
    for (int o = kWarp / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, ≤ 1024); every thread gets the result.
template <typename V>
__device__ V block_sum(V v) {
    __shared__ V part[32];
    const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
    v = warp_sum(v);
    __syncthreads();  // part[] may still be read by a previous call
    if (lane == 0) part[warp] = v;
    __syncthreads();
    const int n_warps = blockDim.x / kWarp;
    V t = lane < n_warps ? part[lane] : V(0);
    return warp_sum(t);
}

// Maximum over the block (as block_sum; NaN-free inputs).
__device__ inline float block_max(float v) {
    __shared__ float part[32];
    const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) part[warp] = v;
    __syncthreads();
    const int n_warps = blockDim.x / kWarp;
    return warp_max(lane < n_warps ? part[lane] : -INFINITY);
}

}  // namespace quantlens::cuda
