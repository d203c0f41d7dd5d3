// Gated DeltaNet hybrid kernels (see deltanet.h).
#include "engine/cuda/deltanet.h"

#include <algorithm>

#include "engine/cuda/cuda_common.cuh"
#include "engine/cuda/cuda_reduce.cuh"

namespace quantlens::cuda {
namespace {

__device__ inline double silu_d(double x) {
    return x / (1.0 + exp(-x));
}

__device__ inline double softplus_d(double x) {  // torch's, with its threshold 20
    return x > 20.0 ? x : log1p(exp(x));
}

__device__ inline float sigmoid_f(float x) {
    return 1.0f / (1.0f + expf(-x));
}

__global__ void conv1d_silu_k(float* out, const float* x, int64_t ldx, const float* w, int64_t N,
                              int64_t T, int64_t CH, int64_t K) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < N * CH;
         i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t n = i / CH, c = i % CH, t = n % T;
        double acc = 0.0;
        for (int64_t j = 0; j < K; ++j) {
            const int64_t src = t - (K - 1) + j;
            if (src >= 0) acc += static_cast<double>(w[c * K + j]) * x[(n - t + src) * ldx + c];
        }
        out[i] = static_cast<float>(silu_d(acc));
    }
}

// One warp per (row, head).
__global__ void l2norm_heads_k(float* x, int64_t ldx, int64_t N, int64_t heads, int64_t D,
                               float eps, float scale) {
    const int64_t item = blockIdx.x * int64_t(blockDim.x / kWarp) + threadIdx.x / kWarp;
    if (item >= N * heads) return;
    float* r = x + (item / heads) * ldx + (item % heads) * D;
    const int lane = threadIdx.x % kWarp;
    double ss = 0.0;
    for (int64_t d = lane; d < D; d += kWarp) ss += static_cast<double>(r[d]) * r[d];
    ss = warp_sum(ss);
    const double inv = 1.0 / sqrt(ss + eps);
    for (int64_t d = lane; d < D; d += kWarp) {
        float y = static_cast<float>(r[d] * inv);
        if (scale != 1.0f) y *= scale;
        r[d] = y;
    }
}

__global__ void gates_k(float* g, float* beta, const float* ba, int64_t ldba, const float* ssm_a,
                        const float* dt_bias, int64_t N, int64_t nk, int64_t nv, bool fused) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < N * nv;
         i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t n = i / nv, h = i % nv;
        int64_t b_col = h, a_col = nv + h;
        if (fused) {
            const int64_t r = nv / nk, group = h / r, j = h % r;
            b_col = group * 2 * r + j;
            a_col = group * 2 * r + r + j;
        }
        const float* row = ba + n * ldba;
        g[i] =
            static_cast<float>(ssm_a[h] * softplus_d(static_cast<double>(row[a_col]) + dt_bias[h]));
        beta[i] = sigmoid_f(row[b_col]);
    }
}

struct HeadRows {
    const float *q, *k, *v;  // row t of the head: + t * ld
    int64_t ld;
    const float *g, *beta;  // + t * nv
    float* out;             // + t * nv * dv
};

__device__ HeadRows head_rows(const DeltaRuleArgs& a) {
    const int64_t b = blockIdx.x / a.nv, h = blockIdx.x % a.nv;
    const int64_t kh = a.v_tiled ? h % a.nk : h / (a.nv / a.nk);
    const float* base = a.in + b * a.T * a.ld_in;
    return {base + a.q_col + kh * a.dk,         base + a.k_col + kh * a.dk,
            base + a.v_col + h * a.dv,          a.ld_in,
            a.g + b * a.T * a.nv + h,           a.beta + b * a.T * a.nv + h,
            a.out + (b * a.T * a.nv + h) * a.dv};
}

// Shared memory of the chunked kernel, in floats (G in doubles at the end).
// (an even count, so the doubles after them stay aligned).
__host__ __device__ inline int64_t chunked_smem_floats(int64_t dk, int64_t dv, int64_t L) {
    return (dk * dv + L * dv + 2 * L * L + L * dk + 2 * L + 1) / 2 * 2;
}
inline size_t chunked_smem_bytes(int64_t dk, int64_t dv, int64_t L) {
    return static_cast<size_t>(chunked_smem_floats(dk, dv, L)) * 4 + static_cast<size_t>(L) * 8;
}

// gated_delta_rule_chunked on one (sequence, value head): S the state entering the chunk;
// U the chunk's corrected values (the WY solve); A[i][m] = e^{G_i − G_m} k_i·k_m (m < i) and
// P[i][m] = e^{G_i − G_m} q_i·k_m (m ≤ i); Kc the chunk's keys.
__global__ void delta_rule_chunked_k(DeltaRuleArgs a, int64_t L0) {
    extern __shared__ float sm[];
    const int64_t dk = a.dk, dv = a.dv;
    float* S = sm;
    float* U = S + dk * dv;
    float* A = U + L0 * dv;
    float* P = A + L0 * L0;
    float* Kc = P + L0 * L0;
    float* Bt = Kc + L0 * dk;
    float* Wl = Bt + L0;  // e^{G_last − G_m}
    double* G = reinterpret_cast<double*>(sm + chunked_smem_floats(dk, dv, L0));
    const HeadRows hr = head_rows(a);
    const int tid = threadIdx.x, nt = blockDim.x;
    for (int64_t i = tid; i < dk * dv; i += nt) S[i] = 0.0f;
    for (int64_t t0 = 0; t0 < a.T; t0 += L0) {
        const int64_t L = min(L0, a.T - t0);
        if (tid == 0) {
            double acc = 0.0;
            for (int64_t i = 0; i < L; ++i) {
                G[i] = acc += hr.g[(t0 + i) * a.nv];
                Bt[i] = hr.beta[(t0 + i) * a.nv];
            }
        }
        for (int64_t i = tid; i < L * dk; i += nt) Kc[i] = hr.k[(t0 + i / dk) * hr.ld + i % dk];
        __syncthreads();
        for (int64_t i = tid; i < L; i += nt) Wl[i] = static_cast<float>(exp(G[L - 1] - G[i]));
        for (int64_t idx = tid; idx < L * L; idx += nt) {
            const int64_t i = idx / L, m = idx % L;
            if (m > i) continue;
            const float* ki = Kc + i * dk;
            const float* km = Kc + m * dk;
            const float* qi = hr.q + (t0 + i) * hr.ld;
            float kk = 0.0f, qk = 0.0f;
            for (int64_t d = 0; d < dk; ++d) {
                kk += ki[d] * km[d];
                qk += qi[d] * km[d];
            }
            const auto decay = static_cast<float>(exp(G[i] - G[m]));
            A[i * L0 + m] = decay * kk;
            P[i * L0 + m] = decay * qk;
        }
        // U = V − e^G·K S, the entering state's part.
        for (int64_t idx = tid; idx < L * dv; idx += nt) {
            const int64_t i = idx / dv, j = idx % dv;
            const float* ki = Kc + i * dk;
            float acc = 0.0f;
            for (int64_t d = 0; d < dk; ++d) acc += ki[d] * S[d * dv + j];
            U[idx] = hr.v[(t0 + i) * hr.ld + j] - static_cast<float>(exp(G[i])) * acc;
        }
        __syncthreads();
        // The unit lower-triangular solve, row by row: U_i = β_i (U_i − Σ_{m<i} A_im U_m). Each
        // thread owns whole columns j, so the rows need no barrier between them.
        for (int64_t j = tid; j < dv; j += nt)
            for (int64_t i = 0; i < L; ++i) {
                float s = U[i * dv + j];
                for (int64_t m = 0; m < i; ++m) s -= A[i * L0 + m] * U[m * dv + j];
                U[i * dv + j] = s * Bt[i];
            }
        __syncthreads();
        // O_i = e^{G_i} q_i S + Σ_{m≤i} P_im U_m.
        for (int64_t idx = tid; idx < L * dv; idx += nt) {
            const int64_t i = idx / dv, j = idx % dv;
            const float* qi = hr.q + (t0 + i) * hr.ld;
            float acc = 0.0f;
            for (int64_t d = 0; d < dk; ++d) acc += qi[d] * S[d * dv + j];
            float o = static_cast<float>(exp(G[i])) * acc;
            for (int64_t m = 0; m <= i; ++m) o += P[i * L0 + m] * U[m * dv + j];
            hr.out[(t0 + i) * a.nv * dv + j] = o;
        }
        __syncthreads();
        // S ← e^{G_last} S + Σ_m e^{G_last − G_m} k_m U_mᵀ.
        const auto e_last = static_cast<float>(exp(G[L - 1]));
        for (int64_t idx = tid; idx < dk * dv; idx += nt) {
            const int64_t d = idx / dv, j = idx % dv;
            float s = e_last * S[idx];
            for (int64_t m = 0; m < L; ++m) s += Wl[m] * Kc[m * dk + d] * U[m * dv + j];
            S[idx] = s;
        }
        __syncthreads();
    }
}

__global__ void delta_rule_sequential_k(DeltaRuleArgs a) {
    extern __shared__ float sm[];
    const int64_t dk = a.dk, dv = a.dv;
    float* S = sm;
    float* u = S + dk * dv;
    const HeadRows hr = head_rows(a);
    const int tid = threadIdx.x, nt = blockDim.x;
    for (int64_t i = tid; i < dk * dv; i += nt) S[i] = 0.0f;
    __syncthreads();
    for (int64_t t = 0; t < a.T; ++t) {
        const float* kt = hr.k + t * hr.ld;
        const float* qt = hr.q + t * hr.ld;
        const float* vt = hr.v + t * hr.ld;
        const auto decay = static_cast<float>(exp(static_cast<double>(hr.g[t * a.nv])));
        const float bt = hr.beta[t * a.nv];
        for (int64_t i = tid; i < dk * dv; i += nt) S[i] *= decay;
        __syncthreads();
        for (int64_t j = tid; j < dv; j += nt) {
            float mem = 0.0f;
            for (int64_t d = 0; d < dk; ++d) mem += S[d * dv + j] * kt[d];
            u[j] = bt * (vt[j] - mem);
        }
        __syncthreads();
        for (int64_t i = tid; i < dk * dv; i += nt) S[i] += kt[i / dv] * u[i % dv];
        __syncthreads();
        for (int64_t j = tid; j < dv; j += nt) {
            float o = 0.0f;
            for (int64_t d = 0; d < dk; ++d) o += S[d * dv + j] * qt[d];
            hr.out[t * a.nv * dv + j] = o;
        }
        __syncthreads();
    }
}

template <typename T>
__global__ void gated_rmsnorm_k(T* out, const float* o, const float* z, int64_t ldz, const float* w,
                                int64_t N, int64_t nv, int64_t dv, float eps) {
    const int64_t item = blockIdx.x * int64_t(blockDim.x / kWarp) + threadIdx.x / kWarp;
    if (item >= N * nv) return;
    const int64_t n = item / nv, h = item % nv;
    const float* r = o + item * dv;
    const float* zr = z + n * ldz + h * dv;
    const int lane = threadIdx.x % kWarp;
    double ss = 0.0;
    for (int64_t d = lane; d < dv; d += kWarp) ss += static_cast<double>(r[d]) * r[d];
    ss = warp_sum(ss);
    const double scale = 1.0 / sqrt(ss / dv + eps);
    for (int64_t d = lane; d < dv; d += kWarp)
        out[item * dv + d] = from_f32<T>(static_cast<float>(r[d] * scale * w[d] * silu_d(zr[d])));
}

__global__ void split_query_gate_k(float* qkv, float* gate, const float* qg, int64_t N, int64_t H,
                                   int64_t KV, int64_t D) {
    const int64_t HD = H * D, W_in = 2 * HD + 2 * KV * D, W_out = HD + 2 * KV * D;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < N * W_in;
         i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t n = i / W_in, c = i % W_in;
        const float x = qg[i];
        if (c >= 2 * HD) {
            qkv[n * W_out + c - HD] = x;
        } else {
            const int64_t h = c / (2 * D), d = c % (2 * D);
            if (d < D)
                qkv[n * W_out + h * D + d] = x;
            else
                gate[n * HD + h * D + d - D] = x;
        }
    }
}

template <typename T>
__global__ void sigmoid_gate_k(T* att, const float* gate, int64_t n) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
         i += int64_t(gridDim.x) * blockDim.x)
        att[i] = from_f32<T>(to_f32(att[i]) * sigmoid_f(gate[i]));
}

template <typename T>
__global__ void gated_residual_k(float* h, const float* y, const T* xn, const float* w, int64_t C) {
    const int64_t n = blockIdx.x;
    double dot = 0.0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
        dot += static_cast<double>(to_f32(xn[n * C + c])) * w[c];
    dot = block_sum(dot);
    const float s = sigmoid_f(static_cast<float>(dot));
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) h[n * C + c] += s * y[n * C + c];
}

unsigned warp_blocks(int64_t items, int warps_per_block) {
    return static_cast<unsigned>((items + warps_per_block - 1) / warps_per_block);
}

int max_shared_bytes() {
    int device = 0, bytes = 0;
    QL_CUDA(cudaGetDevice(&device));
    QL_CUDA(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    return bytes;
}

}  // namespace

void launch_causal_conv1d_silu(float* out, const float* x, int64_t ldx, const float* w, int64_t N,
                               int64_t T, int64_t CH, int64_t K) {
    if (N * CH == 0) return;
    conv1d_silu_k<<<grid_for(N * CH, 256), 256>>>(out, x, ldx, w, N, T, CH, K);
    QL_CUDA_LAUNCH();
}

void launch_l2norm_heads(float* x, int64_t ldx, int64_t N, int64_t heads, int64_t D, float eps,
                         float scale) {
    if (N * heads == 0) return;
    l2norm_heads_k<<<warp_blocks(N * heads, 8), 8 * kWarp>>>(x, ldx, N, heads, D, eps, scale);
    QL_CUDA_LAUNCH();
}

void launch_deltanet_gates(float* g, float* beta, const float* ba, int64_t ldba, const float* ssm_a,
                           const float* dt_bias, int64_t N, int64_t nk, int64_t nv, bool fused_ba) {
    if (N * nv == 0) return;
    gates_k<<<grid_for(N * nv, 256), 256>>>(g, beta, ba, ldba, ssm_a, dt_bias, N, nk, nv, fused_ba);
    QL_CUDA_LAUNCH();
}

namespace {
// The longest chunk (halving from `chunk` down to 8) whose shared memory fits a block; 0: none.
int64_t fitting_chunk(int64_t dk, int64_t dv, int64_t chunk) {
    const auto limit = static_cast<size_t>(max_shared_bytes());
    for (int64_t L = std::max<int64_t>(8, chunk); L >= 8; L /= 2)
        if (chunked_smem_bytes(dk, dv, L) <= limit) return L;
    return 0;
}
}  // namespace

bool gated_delta_rule_fits(int64_t dk, int64_t dv) {
    return fitting_chunk(dk, dv, 64) > 0;
}

void launch_gated_delta_rule_chunked(const DeltaRuleArgs& a, int64_t chunk) {
    if (a.B * a.nv == 0 || a.T == 0) return;
    const int64_t L = fitting_chunk(a.dk, a.dv, chunk);
    if (L == 0)
        check_cuda(cudaErrorInvalidValue,
                   "gated delta rule: the state of a head (key dim x value dim) does not fit a "
                   "block's shared memory");
    const size_t bytes = chunked_smem_bytes(a.dk, a.dv, L);
    QL_CUDA(cudaFuncSetAttribute(delta_rule_chunked_k, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 static_cast<int>(bytes)));
    delta_rule_chunked_k<<<static_cast<unsigned>(a.B * a.nv), 512, bytes>>>(a, L);
    QL_CUDA_LAUNCH();
}

void launch_gated_delta_rule_sequential(const DeltaRuleArgs& a) {
    if (a.B * a.nv == 0 || a.T == 0) return;
    const size_t bytes = static_cast<size_t>(a.dk * a.dv + a.dv) * 4;
    if (bytes > static_cast<size_t>(max_shared_bytes()))
        check_cuda(cudaErrorInvalidValue,
                   "gated delta rule: the state of a head (key dim x value dim) does not fit a "
                   "block's shared memory");
    QL_CUDA(cudaFuncSetAttribute(delta_rule_sequential_k,
                                 cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 static_cast<int>(bytes)));
    delta_rule_sequential_k<<<static_cast<unsigned>(a.B * a.nv), 256, bytes>>>(a);
    QL_CUDA_LAUNCH();
}

void launch_gated_rmsnorm(void* out, Dtype dt, const float* o, const float* z, int64_t ldz,
                          const float* w, int64_t N, int64_t nv, int64_t dv, float eps) {
    if (N * nv == 0) return;
    QL_DISPATCH(dt, (gated_rmsnorm_k<T><<<warp_blocks(N * nv, 8), 8 * kWarp>>>(
                        static_cast<T*>(out), o, z, ldz, w, N, nv, dv, eps)));
}

void launch_split_query_gate(float* qkv, float* gate, const float* qg, int64_t N, int64_t H,
                             int64_t KV, int64_t D) {
    if (N == 0) return;
    split_query_gate_k<<<grid_for(N * (2 * H + 2 * KV) * D, 256), 256>>>(qkv, gate, qg, N, H, KV,
                                                                         D);
    QL_CUDA_LAUNCH();
}

void launch_sigmoid_gate(void* att, Dtype dt, const float* gate, int64_t n) {
    if (n == 0) return;
    QL_DISPATCH(dt, (sigmoid_gate_k<T><<<grid_for(n, 256), 256>>>(static_cast<T*>(att), gate, n)));
}

void launch_gated_residual(float* h, const float* y, const void* xn, Dtype dt, const float* w,
                           int64_t N, int64_t C) {
    if (N == 0) return;
    QL_DISPATCH(dt, (gated_residual_k<T>
                     <<<static_cast<unsigned>(N), 256>>>(h, y, static_cast<const T*>(xn), w, C)));
}

}  // namespace quantlens::cuda
