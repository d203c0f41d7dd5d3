// Flash attention for the CUDA engine (see flash_attention.h): WMMA tensor-core tiles, an online
// softmax per query row, causal tiles skipped.
#include "engine/cuda/flash_attention.h"

#include <mma.h>

#include <algorithm>

#include "engine/cuda/cuda_common.cuh"

namespace quantlens::cuda {
namespace {

using namespace nvcuda;

constexpr int kQueryTile = 64;  // query rows per block: 16 per warp
constexpr int kKeyTile = 64;    // keys per step
constexpr int kWarps = kQueryTile / 16;
constexpr int kPad = 8;  // 16 bytes of padding per shared row: rows no longer share banks

// Shared memory layout of one block, in bytes (every region 32-byte aligned for WMMA).
template <int D>
struct Layout {
    static constexpr int ld_tile = D + kPad;                          // Q, K, V rows (halves)
    static constexpr int ld_f32 = (D > kKeyTile ? D : kKeyTile) + 4;  // scores / P·V (floats)
    static constexpr int ld_p = kKeyTile + kPad;                      // probabilities (halves)
    static constexpr int tile_bytes = kKeyTile * ld_tile * 2;
    static constexpr int q_bytes = kQueryTile * ld_tile * 2;
    static constexpr int f32_bytes = 16 * ld_f32 * 4;  // per warp
    static constexpr int p_bytes = 16 * ld_p * 2;      // per warp
    static constexpr int k_off = 0, v_off = tile_bytes, q_off = 2 * tile_bytes;
    static constexpr int f32_off = q_off + q_bytes;
    static constexpr int p_off = f32_off + kWarps * f32_bytes;
    static constexpr int total = p_off + kWarps * p_bytes;
    static_assert(tile_bytes % 32 == 0 && q_bytes % 32 == 0 && f32_bytes % 32 == 0 &&
                  p_bytes % 32 == 0);
};

// rows × D halves from a strided global array into shared memory (ld_tile), zero past `valid`.
template <int D>
__device__ void load_tile(__half* dst, const __half* src, int64_t stride, int rows, int valid) {
    constexpr int vec = 8;  // halves per 16-byte load
    for (int i = threadIdx.x; i < rows * (D / vec); i += blockDim.x) {
        const int r = i / (D / vec), c = (i % (D / vec)) * vec;
        uint4 x = make_uint4(0, 0, 0, 0);
        if (r < valid) x = *reinterpret_cast<const uint4*>(src + r * stride + c);
        *reinterpret_cast<uint4*>(dst + r * Layout<D>::ld_tile + c) = x;
    }
}

template <int D>
__global__ void __launch_bounds__(kWarps * 32)
    flash_attention_k(const __half* __restrict__ q, const __half* __restrict__ k,
                      const __half* __restrict__ v, __half* __restrict__ out, int T, int H, int KV,
                      float scale) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
    using L = Layout<D>;
    extern __shared__ __align__(128) unsigned char smem[];
    __half* Ks = reinterpret_cast<__half*>(smem + L::k_off);
    __half* Vs = reinterpret_cast<__half*>(smem + L::v_off);
    __half* Qs = reinterpret_cast<__half*>(smem + L::q_off);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float* S = reinterpret_cast<float*>(smem + L::f32_off + warp * L::f32_bytes);
    __half* P = reinterpret_cast<__half*>(smem + L::p_off + warp * L::p_bytes);

    // The longest query tiles (the last ones, which see the most keys) start first.
    const int q0 = (gridDim.x - 1 - blockIdx.x) * kQueryTile;
    const int h = blockIdx.y, b = blockIdx.z, kvh = h / (H / KV);
    const int64_t q_stride = static_cast<int64_t>(H) * D, kv_stride = static_cast<int64_t>(KV) * D;
    const __half* qb =
        q + (static_cast<int64_t>(b) * T + q0) * q_stride + static_cast<int64_t>(h) * D;
    const __half* kb = k + static_cast<int64_t>(b) * T * kv_stride + static_cast<int64_t>(kvh) * D;
    const __half* vb = v + static_cast<int64_t>(b) * T * kv_stride + static_cast<int64_t>(kvh) * D;

    load_tile<D>(Qs, qb, q_stride, kQueryTile, min(kQueryTile, T - q0));
    __syncthreads();
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> qf[D / 16];
#pragma unroll
    for (int kd = 0; kd < D / 16; ++kd)
        wmma::load_matrix_sync(qf[kd], Qs + warp * 16 * L::ld_tile + kd * 16, L::ld_tile);

    // Lane pair (2r, 2r+1) owns query row r of the warp: half the keys of a tile each, then
    // half the output columns each.
    const int r = lane >> 1, side = lane & 1;
    const int query = q0 + warp * 16 + r;
    const int warp_last = q0 + warp * 16 + 15;
    const int block_last = min(q0 + kQueryTile, T) - 1;
    float o[D / 2];
#pragma unroll
    for (int j = 0; j < D / 2; ++j) o[j] = 0.0f;
    float m_run = -INFINITY, l_run = 0.0f;

    for (int k0 = 0; k0 <= block_last; k0 += kKeyTile) {
        __syncthreads();  // every warp is done with the previous K and V tiles
        const int valid = min(kKeyTile, T - k0);
        load_tile<D>(Ks, kb + static_cast<int64_t>(k0) * kv_stride, kv_stride, kKeyTile, valid);
        load_tile<D>(Vs, vb + static_cast<int64_t>(k0) * kv_stride, kv_stride, kKeyTile, valid);
        __syncthreads();
        if (k0 > warp_last) continue;  // every key of this tile is after every query of the warp

            // S = Q · Kᵀ (16 × kKeyTile).
#pragma unroll
        for (int kt = 0; kt < kKeyTile / 16; ++kt) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
#pragma unroll
            for (int kd = 0; kd < D / 16; ++kd) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> kf;
                wmma::load_matrix_sync(kf, Ks + kt * 16 * L::ld_tile + kd * 16, L::ld_tile);
                wmma::mma_sync(acc, qf[kd], kf, acc);
            }
            wmma::store_matrix_sync(S + kt * 16, acc, L::ld_f32, wmma::mem_row_major);
        }
        __syncwarp();

        // Online softmax over this lane's half of the row.
        constexpr int half_keys = kKeyTile / 2;
        const int c0 = side * half_keys;
        float s[half_keys];
        float tile_max = -INFINITY;
#pragma unroll
        for (int j = 0; j < half_keys; ++j) {
            const int key = k0 + c0 + j;
            const float x = key <= query && key < T ? S[r * L::ld_f32 + c0 + j] * scale : -INFINITY;
            s[j] = x;
            tile_max = fmaxf(tile_max, x);
        }
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
        const float m_new = fmaxf(m_run, tile_max);
        const bool none = m_new == -INFINITY;  // a padding row past T: nothing to attend to
        const float alpha = none ? 1.0f : expf(m_run - m_new);
        float p_sum = 0.0f;
#pragma unroll
        for (int j = 0; j < half_keys; ++j) {
            const __half p = __float2half_rn(none ? 0.0f : expf(s[j] - m_new));
            P[r * L::ld_p + c0 + j] = p;
            p_sum += __half2float(p);  // the rounded values are what P·V sums
        }
        p_sum += __shfl_xor_sync(0xffffffffu, p_sum, 1);
        l_run = l_run * alpha + p_sum;
        m_run = m_new;
#pragma unroll
        for (int j = 0; j < D / 2; ++j) o[j] *= alpha;
        __syncwarp();

        // S (reused) = P · V (16 × D), added to this lane's half of the output row.
#pragma unroll
        for (int ct = 0; ct < D / 16; ++ct) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
#pragma unroll
            for (int kk = 0; kk < kKeyTile / 16; ++kk) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> pf;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> vf;
                wmma::load_matrix_sync(pf, P + kk * 16, L::ld_p);
                wmma::load_matrix_sync(vf, Vs + kk * 16 * L::ld_tile + ct * 16, L::ld_tile);
                wmma::mma_sync(acc, pf, vf, acc);
            }
            wmma::store_matrix_sync(S + ct * 16, acc, L::ld_f32, wmma::mem_row_major);
        }
        __syncwarp();
#pragma unroll
        for (int j = 0; j < D / 2; ++j) o[j] += S[r * L::ld_f32 + side * (D / 2) + j];
        __syncwarp();  // S is overwritten by the next tile's scores
    }

    if (query < T) {
        const float inv = l_run > 0.0f ? 1.0f / l_run : 0.0f;
        __half* dst = out + (static_cast<int64_t>(b) * T + query) * q_stride +
                      static_cast<int64_t>(h) * D + side * (D / 2);
#pragma unroll
        for (int j = 0; j < D / 2; j += 2)
            *reinterpret_cast<__half2*>(dst + j) = __floats2half2_rn(o[j] * inv, o[j + 1] * inv);
    }
#endif
}

template <int D>
void launch(const void* q, const void* k, const void* v, void* out, int64_t B, int64_t T, int64_t H,
            int64_t KV, float scale) {
    constexpr int bytes = Layout<D>::total;
    static bool configured = false;  // the opt-in above 48 KB, once per process
    if (!configured) {
        QL_CUDA(cudaFuncSetAttribute(flash_attention_k<D>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
        configured = true;
    }
    const dim3 grid(static_cast<unsigned>((T + kQueryTile - 1) / kQueryTile),
                    static_cast<unsigned>(H), static_cast<unsigned>(B));
    flash_attention_k<D><<<grid, kWarps * 32, bytes>>>(
        static_cast<const __half*>(q), static_cast<const __half*>(k), static_cast<const __half*>(v),
        static_cast<__half*>(out), static_cast<int>(T), static_cast<int>(H), static_cast<int>(KV),
        scale);
    QL_CUDA_LAUNCH();
}

}  // namespace

bool flash_attention_supports(Dtype dt, int64_t head_dim) {
    if (dt != Dtype::F16 || (head_dim != 64 && head_dim != 128)) return false;
    int device = 0, major = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess)
        return false;
    return major >= 7;
}

void launch_flash_attention(const void* q, const void* k, const void* v, void* out, int64_t B,
                            int64_t T, int64_t H, int64_t KV, int64_t D, float scale) {
    if (B == 0 || T == 0) return;
    if (D == 64)
        launch<64>(q, k, v, out, B, T, H, KV, scale);
    else
        launch<128>(q, k, v, out, B, T, H, KV, scale);
}

}  // namespace quantlens::cuda
