// ql_cuda's own kernels: see cuda_kernels.h for shapes and the numerics they mirror.
#include <algorithm>
#include <cstdint>

#include "engine/cuda/cuda_common.cuh"
#include "engine/cuda/cuda_kernels.h"
#include "engine/cuda/cuda_reduce.cuh"

namespace quantlens::cuda {
namespace {

// (value, index) max with the lowest index winning ties, like std::max_element.
struct ArgMax {
    float v;
    int32_t i;
};
__device__ ArgMax better(ArgMax a, ArgMax b) {
    return (b.v > a.v || (b.v == a.v && b.i < a.i)) ? b : a;
}
__device__ ArgMax block_argmax(ArgMax m) {
    __shared__ float pv[32];
    __shared__ int32_t pi[32];
    const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
    for (int o = kWarp / 2; o > 0; o >>= 1) {
        ArgMax other{__shfl_xor_sync(0xffffffffu, m.v, o), __shfl_xor_sync(0xffffffffu, m.i, o)};
        m = better(m, other);
    }
    __syncthreads();
    if (lane == 0) pv[warp] = m.v, pi[warp] = m.i;
    __syncthreads();
    const int n_warps = blockDim.x / kWarp;
    ArgMax t = lane < n_warps ? ArgMax{pv[lane], pi[lane]} : ArgMax{-INFINITY, INT32_MAX};
    for (int o = kWarp / 2; o > 0; o >>= 1) {
        ArgMax other{__shfl_xor_sync(0xffffffffu, t.v, o), __shfl_xor_sync(0xffffffffu, t.i, o)};
        t = better(t, other);
    }
    return t;
}

template <typename T>
__global__ void embed_k(float* h, const T* table, const int32_t* tokens, int64_t C, float scale) {
    const int64_t n = blockIdx.x;
    const T* row = table + static_cast<int64_t>(tokens[n]) * C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
        h[n * C + c] = scale == 1.0f ? to_f32(row[c]) : to_f32(row[c]) * scale;
}

template <typename T>
__global__ void rmsnorm_k(T* out, const float* in, const float* w, int64_t C, float eps, int64_t S,
                          int64_t Tq, int64_t t0) {
    const int64_t r = blockIdx.x;
    const float* x = in + ((r / S) * Tq + t0 + r % S) * C;
    double ss = 0.0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) ss += static_cast<double>(x[c]) * x[c];
    ss = block_sum(ss);
    const float scale = static_cast<float>(1.0 / sqrt(ss / C + eps));
    T* o = out + r * C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) o[c] = from_f32<T>(x[c] * scale * w[c]);
}

// One warp per (token, head); see launch_qkv_post.
template <typename T>
__global__ void qkv_post_k(const float* qkv, const float* bias, const float* q_norm,
                           const float* k_norm, float eps, const float* cos_t, const float* sin_t,
                           bool neox, T* q, T* k, T* v, int64_t Tq, int64_t H, int64_t KV,
                           int64_t D, int64_t P) {
    const int64_t n = blockIdx.x;
    const int64_t hd =
        static_cast<int64_t>(blockIdx.y) * (blockDim.x / kWarp) + threadIdx.x / kWarp;
    const int lane = threadIdx.x % kWarp;
    const int64_t heads = H + 2 * KV;
    if (hd >= heads) return;
    const float* x = qkv + (n * heads + hd) * D;
    const float* b = bias ? bias + hd * D : nullptr;
    if (hd >= H + KV) {  // v: bias only
        T* o = v + (n * KV + (hd - H - KV)) * D;
        for (int64_t j = lane; j < D; j += kWarp) o[j] = from_f32<T>(x[j] + (b ? b[j] : 0.0f));
        return;
    }
    const bool is_q = hd < H;
    const float* nw = is_q ? q_norm : k_norm;
    T* o = is_q ? q + (n * H + hd) * D : k + (n * KV + (hd - H)) * D;
    float scale = 1.0f;
    if (nw) {
        double ss = 0.0;
        for (int64_t j = lane; j < D; j += kWarp) {
            const float xv = x[j] + (b ? b[j] : 0.0f);
            ss += static_cast<double>(xv) * xv;
        }
        ss = warp_sum(ss);
        scale = static_cast<float>(1.0 / sqrt(ss / D + eps));
    }
    const int64_t t = n % Tq;
    for (int64_t i = lane; i < P; i += kWarp) {
        const int64_t ia = neox ? i : 2 * i, ib = neox ? i + P : 2 * i + 1;
        float x0 = x[ia] + (b ? b[ia] : 0.0f), x1 = x[ib] + (b ? b[ib] : 0.0f);
        if (nw) {
            x0 = x0 * scale * nw[ia];
            x1 = x1 * scale * nw[ib];
        }
        const float c = cos_t[t * P + i], s = sin_t[t * P + i];
        o[ia] = from_f32<T>(x0 * c - x1 * s);
        o[ib] = from_f32<T>(x0 * s + x1 * c);
    }
    for (int64_t j = 2 * P + lane; j < D; j += kWarp) {  // partial rotary: the rest unrotated
        float xv = x[j] + (b ? b[j] : 0.0f);
        if (nw) xv = xv * scale * nw[j];
        o[j] = from_f32<T>(xv);
    }
}

// One warp per (token, head), head H being the shared latent kv; see launch_mla_post.
template <typename T>
__global__ void mla_post_k(const float* q, const float* kv, const float* kv_norm, float eps,
                           const float* cos_t, const float* sin_t, bool neox, T* q_nope,
                           float* q_cat, float* k_cat, int64_t N, int64_t Tq, int64_t H, int64_t P,
                           int64_t R, int64_t L) {
    const int64_t n = blockIdx.x;
    const int64_t hd =
        static_cast<int64_t>(blockIdx.y) * (blockDim.x / kWarp) + threadIdx.x / kWarp;
    const int lane = threadIdx.x % kWarp;
    if (hd > H) return;
    const float* x;  // the R channels to rotate
    float* o;        // where they go
    if (hd < H) {
        const float* qh = q + (n * H + hd) * (P + R);
        for (int64_t j = lane; j < P; j += kWarp) q_nope[(hd * N + n) * P + j] = from_f32<T>(qh[j]);
        x = qh + P;
        o = q_cat + (n * H + hd) * (L + R) + L;
    } else {
        const float* c = kv + n * (L + R);
        double ss = 0.0;
        for (int64_t j = lane; j < L; j += kWarp) ss += static_cast<double>(c[j]) * c[j];
        ss = warp_sum(ss);
        const float scale = static_cast<float>(1.0 / sqrt(ss / L + eps));
        float* k = k_cat + n * (L + R);
        for (int64_t j = lane; j < L; j += kWarp) k[j] = c[j] * scale * kv_norm[j];
        x = c + L;
        o = k + L;
    }
    const int64_t t = n % Tq, half = R / 2;
    for (int64_t i = lane; i < half; i += kWarp) {
        const int64_t ia = neox ? i : 2 * i, ib = neox ? i + half : 2 * i + 1;
        const float c = cos_t[t * half + i], s = sin_t[t * half + i];
        o[ia] = x[ia] * c - x[ib] * s;
        o[ib] = x[ia] * s + x[ib] * c;
    }
}

template <typename T>
__global__ void heads_to_16_k(T* dst, const float* src, int64_t N, int64_t H, int64_t W) {
    const int64_t n = blockIdx.x, hd = blockIdx.y;
    for (int64_t j = threadIdx.x; j < W; j += blockDim.x)
        dst[(hd * N + n) * W + j] = from_f32<T>(src[(n * H + hd) * W + j]);
}

// One warp per score row. Rows up to kWarp · kSoftmaxCache keep each exp in registers (one expf
// per score; same values and summation order as the general loop below).
constexpr int kSoftmaxCache = 16;
// Keys [lo, n_valid) of a row are valid: causal, and within the window when there is one.
template <typename T>
__global__ void causal_softmax_k(const float* scores, T* p, int64_t rows, int64_t Tq,
                                 int64_t key_block, int64_t window, float softcap,
                                 const float* sinks, int64_t heads) {
    const int64_t r = static_cast<int64_t>(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp;
    const int lane = threadIdx.x % kWarp;
    if (r >= rows) return;
    const int64_t n_valid = r % Tq + 1;
    const int64_t lo = window > 0 ? max(int64_t{0}, n_valid - window) : 0;
    // Written up to the end of the query's key block: the P·V GEMMs read no further.
    const int64_t n_out = std::min(Tq, (r % Tq / key_block + 1) * key_block);
    const float* s = scores + r * Tq;
    T* o = p + r * Tq;
    // Gemma 2's soft-capping, as engine/kernels.cpp's attention applies it (before the max).
    auto score = [&](int64_t j) { return softcap > 0 ? softcap * tanhf(s[j] / softcap) : s[j]; };
    auto valid = [&](int64_t j) { return j >= lo && j < n_valid; };
    // gpt-oss: the head's sink logit joins the maximum and the denominator, never the output.
    const float sink = sinks ? sinks[r / Tq % heads] : -INFINITY;
    float mx = sink;
    for (int64_t j = lo + lane; j < n_valid; j += kWarp) mx = fmaxf(mx, score(j));
    mx = warp_max(mx);
    const float sink_term = sinks ? expf(sink - mx) : 0.0f;
    if (Tq <= kWarp * kSoftmaxCache) {
        float e[kSoftmaxCache];
        float sum = 0.0f;
#pragma unroll
        for (int i = 0; i < kSoftmaxCache; ++i) {
            const int64_t j = lane + i * kWarp;
            e[i] = valid(j) ? expf(score(j) - mx) : 0.0f;
            if (valid(j)) sum += e[i];
        }
        sum = warp_sum(sum) + sink_term;
        const float inv = 1.0f / sum;
#pragma unroll
        for (int i = 0; i < kSoftmaxCache; ++i) {
            const int64_t j = lane + i * kWarp;
            if (j < n_out) o[j] = from_f32<T>(valid(j) ? e[i] * inv : 0.0f);
        }
        return;
    }
    float sum = 0.0f;
    for (int64_t j = lo + lane; j < n_valid; j += kWarp) sum += expf(score(j) - mx);
    sum = warp_sum(sum) + sink_term;
    const float inv = 1.0f / sum;
    for (int64_t j = lane; j < n_out; j += kWarp)
        o[j] = from_f32<T>(valid(j) ? expf(score(j) - mx) * inv : 0.0f);
}

__device__ inline float silu_times(float g, float u) {
    return g / (1.0f + expf(-g)) * u;
}
// engine/kernels.cpp's geglu_tanh_forward: √(2/π) rounded to float, the cubic in float.
__device__ inline float gelu_tanh_times(float g, float u) {
    constexpr float kSqrt2OverPi = 0.7978845608028654f;
    const float inner = kSqrt2OverPi * (g + 0.044715f * g * g * g);
    return 0.5f * g * (1.0f + tanhf(inner)) * u;
}
// engine/layers/clamped_swiglu.cpp's gpt-oss expert activation, in its float order.
__device__ inline float clamped_swiglu_times(float g, float u, float limit, float alpha) {
    g = fminf(g, limit);
    u = fminf(fmaxf(u, -limit), limit);
    return (u + 1.0f) * (g / (1.0f + expf(-alpha * g)));
}
template <GateAct kAct>
__device__ inline float gate_times(float g, float u, const GateExtras& ex) {
    if constexpr (kAct == GateAct::GeluTanh) return gelu_tanh_times(g, u);
    if constexpr (kAct == GateAct::ClampedSwiGLU)
        return clamped_swiglu_times(g, u, ex.limit, ex.alpha);
    return silu_times(g, u);
}

// Row n of gu is [gate | up], F each; blockIdx.y walks the rows (no 64-bit division per
// element), and each thread takes kVec neighbours in one 16-byte load of each half when the
// widths and pointers allow it (kVec 1 otherwise).
template <typename T, int kVec, GateAct kAct>
__global__ void swiglu_k(T* out, const T* gu, int64_t N, int64_t F, GateExtras ex) {
    struct alignas(sizeof(T) * kVec) Pack {
        T v[kVec];
    };
    for (int64_t n = blockIdx.y; n < N; n += gridDim.y) {
        const T* g = gu + n * 2 * F;
        for (int64_t f = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) * kVec;
             f < F; f += static_cast<int64_t>(gridDim.x) * blockDim.x * kVec) {
            const Pack gv = *reinterpret_cast<const Pack*>(g + f);
            const Pack uv = *reinterpret_cast<const Pack*>(g + F + f);
            Pack o;
#pragma unroll
            for (int j = 0; j < kVec; ++j) {
                float g = to_f32(gv.v[j]), u = to_f32(uv.v[j]);
                if (ex.gate_bias) g += ex.gate_bias[f + j];
                if (ex.up_bias) u += ex.up_bias[f + j];
                o.v[j] = from_f32<T>(gate_times<kAct>(g, u, ex));
            }
            *reinterpret_cast<Pack*>(out + n * F + f) = o;
        }
    }
}

__global__ void rmsnorm_add_k(float* h, const float* y, const float* w, int64_t C, float eps) {
    const int64_t r = blockIdx.x;
    const float* x = y + r * C;
    double ss = 0.0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) ss += static_cast<double>(x[c]) * x[c];
    ss = block_sum(ss);
    const float scale = static_cast<float>(1.0 / sqrt(ss / C + eps));
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) h[r * C + c] += x[c] * scale * w[c];
}

__global__ void softcap_k(float* x, int64_t n, float cap) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        x[i] = cap * tanhf(x[i] / cap);
}

__global__ void router_topk_k(const float* logits, int32_t* ids, float* weights, int64_t N,
                              int64_t E, int64_t K, bool renormalize) {
    const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    if (r >= N) return;
    const float* z = logits + r * E;
    float mx = z[0];
    for (int64_t e = 1; e < E; ++e) mx = fmaxf(mx, z[e]);
    uint64_t taken[4] = {0, 0, 0, 0};  // E ≤ 256
    double kept = 0.0;
    for (int64_t i = 0; i < K; ++i) {
        int64_t best = -1;
        double bp = -1.0;
        for (int64_t e = 0; e < E; ++e) {
            if (taken[e / 64] >> (e % 64) & 1) continue;
            const double p = exp(static_cast<double>(z[e] - mx));
            if (p > bp) bp = p, best = e;  // strict: the lowest index wins ties (stable sort)
        }
        taken[best / 64] |= 1ull << (best % 64);
        ids[r * K + i] = static_cast<int32_t>(best);
        weights[r * K + i] = static_cast<float>(bp);
        kept += bp;
    }
    double denominator = kept;  // else every expert's: the top-k softmax probabilities as they are
    if (!renormalize) {
        denominator = 0.0;
        for (int64_t e = 0; e < E; ++e) denominator += exp(static_cast<double>(z[e] - mx));
    }
    for (int64_t i = 0; i < K; ++i)
        weights[r * K + i] =
            static_cast<float>(static_cast<double>(weights[r * K + i]) / denominator);
}

template <typename T>
__global__ void gather_rows_k(T* dst, const T* src, const int32_t* rows, int64_t C) {
    const int64_t i = blockIdx.x;
    const T* s = src + static_cast<int64_t>(rows[i]) * C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) dst[i * C + c] = s[c];
}

__global__ void scatter_add_k(float* h, const float* y, const int32_t* rows, const float* w,
                              const float* bias, int64_t C) {
    const int64_t i = blockIdx.x;
    float* o = h + static_cast<int64_t>(rows[i]) * C;
    const float wi = w[i];
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
        o[c] += wi * (bias ? y[i * C + c] + bias[c] : y[i * C + c]);
}

__global__ void add_bias_k(float* x, const float* bias, int64_t N, int64_t C) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < N * C;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        x[i] += bias[i % C];
}

// The argmax and log Σ exp of one row in one read: each thread keeps a running maximum and
// Σ expf(z − max) (in double; rescaled when the maximum moves), then the block combines them.
// The reference and every scored row go through this same code with the same block size, so
// equal logits give bit-equal results (an unperturbed item scores a KLD of exactly 0).
struct RunningLse {
    ArgMax m{-INFINITY, INT32_MAX};
    double sum = 0.0;
    __device__ void add(float zv, int64_t v) {
        if (zv > m.v) {
            if (sum > 0.0) sum *= exp(static_cast<double>(m.v) - zv);
            m = ArgMax{zv, static_cast<int32_t>(v)};
        }
        sum += expf(zv - m.v);
    }
    struct Result {
        float mx;
        int32_t top1;
        double lse;
    };
    __device__ Result finish() {  // every thread of the block must call it
        const float own_max = m.v;
        const ArgMax best = block_argmax(m);
        const double total = block_sum(
            own_max == -INFINITY ? 0.0 : sum * exp(static_cast<double>(own_max) - best.v));
        return {best.v, best.i, best.v + log(total)};
    }
};

__global__ void reference_rows_k(const float* logits, int64_t S, int64_t R, int64_t V,
                                 float* ref_logp, double* ref_lse, int32_t* ref_top1,
                                 int64_t row0) {
    const int64_t b = blockIdx.x / S, s = blockIdx.x % S;
    const float* z = logits + (b * R + s) * V;
    RunningLse run;
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) run.add(z[v], v);
    const RunningLse::Result rn = run.finish();
    const auto lse = static_cast<float>(rn.lse);
    float* out = ref_logp + (row0 + blockIdx.x) * V;
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) out[v] = z[v] - lse;
    if (threadIdx.x == 0) {
        ref_top1[row0 + blockIdx.x] = rn.top1;
        ref_lse[row0 + blockIdx.x] = rn.lse;
    }
}

// One pass over the row's logits z and the reference log-probabilities (the sweep runs it for
// every item over rows × vocabulary, so each is read from memory once). With the reference's
// own shift λ = lse_ref (the float the reference subtracted), t = z − λ rounds as the reference
// did, and KLD = Σ p_ref·(ref − t) + (lse − λ)·Σ p_ref: the per-element roundings of equal
// logits cancel exactly, as in a two-pass KLD against z − lse.
__global__ void score_rows_k(const float* logits, int64_t S, int64_t R, int64_t V,
                             const float* ref_logp, const double* ref_lse, const int32_t* ref_top1,
                             const int32_t* next, int64_t row0, RowStats* out) {
    const int64_t b = blockIdx.x / S, s = blockIdx.x % S, row = row0 + blockIdx.x;
    const float* z = logits + (b * R + s) * V;
    const float* ref = ref_logp + row * V;
    const double lambda_d = ref_lse[row];
    const auto lambda = static_cast<float>(lambda_d);
    RunningLse run;
    double ref_minus_t = 0.0, ref_mass = 0.0;
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
        const float zv = z[v], rv = ref[v];
        run.add(zv, v);
        const double p = expf(rv);
        ref_minus_t += p * (static_cast<double>(rv) - (zv - lambda));
        ref_mass += p;
    }
    const RunningLse::Result rn = run.finish();
    ref_minus_t = block_sum(ref_minus_t);
    ref_mass = block_sum(ref_mass);
    const double k = ref_minus_t + (rn.lse - lambda_d) * ref_mass;
    const auto lse = static_cast<float>(rn.lse);
    if (threadIdx.x == 0) {
        const int32_t nx = next[row];
        const float logp = z[nx] - lse;
        RowStats st;
        st.kld = k > 0.0 ? k : 0.0;
        st.nll = -logp;
        st.ref_nll = -ref[nx];
        const double dp = exp(static_cast<double>(logp)) - exp(static_cast<double>(ref[nx]));
        st.dp2 = dp * dp;
        st.same = rn.top1 == ref_top1[row] ? 1 : 0;
        st.pad = 0;
        out[blockIdx.x] = st;
    }
}

constexpr int kPartials = 1024;

__global__ void sq_diff_partial_k(const float* a, const float* b, int64_t n, int64_t cols,
                                  int64_t ld, double* partials) {
    double s = 0.0;
    for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < n;
         j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t i = cols < ld ? j / cols * ld + j % cols : j;
        const double d = static_cast<double>(a[i]) - b[i];
        s += d * d;
    }
    s = block_sum(s);
    if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

__global__ void sum_partials_k(const double* partials, int n, double* acc) {
    double s = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += partials[i];
    s = block_sum(s);
    if (threadIdx.x == 0) *acc += s;
}

template <typename T>
__global__ void f32_to_16_k(T* dst, const float* src, int64_t n) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        dst[i] = from_f32<T>(src[i]);
}

template <typename T>
__global__ void t16_to_f32_k(float* dst, const T* src, int64_t n) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        dst[i] = to_f32(src[i]);
}

__global__ void fill_f32_k(float* dst, float value, int64_t n) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        dst[i] = value;
}

__device__ uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

template <typename T>
__global__ void random_16_k(T* dst, int64_t n, uint64_t seed, float scale) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const uint64_t r = mix64(seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(i));
        const float u = static_cast<float>(r >> 40) * (1.0f / 16777216.0f);  // [0, 1)
        dst[i] = from_f32<T>((2.0f * u - 1.0f) * scale);
    }
}

}  // namespace

void launch_embed(float* h, const void* table, Dtype dt, const int32_t* tokens, int64_t N,
                  int64_t C, float scale) {
    if (N == 0) return;
    QL_DISPATCH(dt, (embed_k<T><<<N, 256>>>(h, static_cast<const T*>(table), tokens, C, scale)));
}

void launch_rmsnorm(void* out, Dtype dt, const float* in, const float* w, int64_t R, int64_t C,
                    float eps, int64_t S, int64_t T_, int64_t t0) {
    if (R == 0) return;
    QL_DISPATCH(dt, (rmsnorm_k<T><<<R, 256>>>(static_cast<T*>(out), in, w, C, eps, S, T_, t0)));
}

void launch_qkv_post(const float* qkv, const float* bias, const float* q_norm, const float* k_norm,
                     float eps, const float* cos_t, const float* sin_t, bool neox, void* q, void* k,
                     void* v, Dtype dt, int64_t N, int64_t T_, int64_t H, int64_t KV, int64_t D,
                     int64_t P) {
    if (N == 0) return;
    constexpr int kWarps = 8;
    const dim3 grid(static_cast<unsigned>(N),
                    static_cast<unsigned>((H + 2 * KV + kWarps - 1) / kWarps));
    QL_DISPATCH(dt, (qkv_post_k<T><<<grid, kWarps * kWarp>>>(
                        qkv, bias, q_norm, k_norm, eps, cos_t, sin_t, neox, static_cast<T*>(q),
                        static_cast<T*>(k), static_cast<T*>(v), T_, H, KV, D, P)));
}

void launch_mla_post(const float* q, const float* kv, const float* kv_norm, float eps,
                     const float* cos_t, const float* sin_t, bool neox, void* q_nope, float* q_cat,
                     float* k_cat, Dtype dt, int64_t N, int64_t T_, int64_t H, int64_t P, int64_t R,
                     int64_t L) {
    if (N == 0) return;
    constexpr int kWarps = 8;
    const dim3 grid(static_cast<unsigned>(N), static_cast<unsigned>((H + 1 + kWarps - 1) / kWarps));
    QL_DISPATCH(dt, (mla_post_k<T><<<grid, kWarps * kWarp>>>(q, kv, kv_norm, eps, cos_t, sin_t,
                                                             neox, static_cast<T*>(q_nope), q_cat,
                                                             k_cat, N, T_, H, P, R, L)));
}

void launch_heads_to_16(void* dst, Dtype dt, const float* src, int64_t N, int64_t H, int64_t W) {
    if (N == 0) return;
    const dim3 grid(static_cast<unsigned>(N), static_cast<unsigned>(H));
    QL_DISPATCH(dt, (heads_to_16_k<T><<<grid, 128>>>(static_cast<T*>(dst), src, N, H, W)));
}

void launch_causal_softmax(const float* scores, void* p, Dtype dt, int64_t rows, int64_t T_,
                           int64_t key_block, int64_t window, float softcap, const float* sinks,
                           int64_t heads) {
    if (rows == 0) return;
    constexpr int kWarps = 8;
    const auto grid = static_cast<unsigned>((rows + kWarps - 1) / kWarps);
    const int64_t kb = key_block > 0 ? key_block : T_;
    QL_DISPATCH(dt, (causal_softmax_k<T><<<grid, kWarps * kWarp>>>(
                        scores, static_cast<T*>(p), rows, T_, kb, window, softcap, sinks, heads)));
}

namespace {
template <GateAct kAct>
void launch_gated(void* out, const void* gu, Dtype dt, int64_t N, int64_t F, const GateExtras& ex) {
    const bool aligned =
        reinterpret_cast<uintptr_t>(out) % 16 == 0 && reinterpret_cast<uintptr_t>(gu) % 16 == 0;
    QL_DISPATCH(dt, ({
                    constexpr int kVec = static_cast<int>(16 / sizeof(T));
                    const dim3 grid(grid_for(F, 256 * kVec, 1024),
                                    static_cast<unsigned>(std::min<int64_t>(N, 65535)));
                    if (aligned && F % kVec == 0)
                        swiglu_k<T, kVec, kAct><<<grid, 256>>>(static_cast<T*>(out),
                                                               static_cast<const T*>(gu), N, F, ex);
                    else
                        swiglu_k<T, 1, kAct><<<dim3(grid_for(F, 256, 1024), grid.y), 256>>>(
                            static_cast<T*>(out), static_cast<const T*>(gu), N, F, ex);
                }));
}
}  // namespace

void launch_swiglu(void* out, const void* gu, Dtype dt, int64_t N, int64_t F, GateAct act,
                   const GateExtras& ex) {
    if (N * F == 0) return;
    switch (act) {
        case GateAct::GeluTanh:
            launch_gated<GateAct::GeluTanh>(out, gu, dt, N, F, ex);
            break;
        case GateAct::ClampedSwiGLU:
            launch_gated<GateAct::ClampedSwiGLU>(out, gu, dt, N, F, ex);
            break;
        case GateAct::SiLU:
            launch_gated<GateAct::SiLU>(out, gu, dt, N, F, ex);
            break;
    }
}

void launch_rmsnorm_add(float* h, const float* y, const float* w, int64_t N, int64_t C, float eps) {
    if (N == 0) return;
    rmsnorm_add_k<<<static_cast<unsigned>(N), 256>>>(h, y, w, C, eps);
    QL_CUDA_LAUNCH();
}

void launch_softcap(float* x, int64_t n, float cap) {
    if (n == 0) return;
    softcap_k<<<grid_for(n, 256, 65535), 256>>>(x, n, cap);
    QL_CUDA_LAUNCH();
}

void launch_router_topk(const float* logits, int32_t* ids, float* weights, int64_t N, int64_t E,
                        int64_t K, bool renormalize) {
    if (N == 0) return;
    router_topk_k<<<grid_for(N, 128), 128>>>(logits, ids, weights, N, E, K, renormalize);
    QL_CUDA_LAUNCH();
}

void launch_gather_rows(void* dst, const void* src, Dtype dt, const int32_t* rows, int64_t M,
                        int64_t C) {
    if (M == 0) return;
    QL_DISPATCH(dt, (gather_rows_k<T>
                     <<<M, 256>>>(static_cast<T*>(dst), static_cast<const T*>(src), rows, C)));
}

void launch_scatter_add(float* h, const float* y, const int32_t* rows, const float* w, int64_t M,
                        int64_t C, const float* bias) {
    if (M == 0) return;
    scatter_add_k<<<M, 256>>>(h, y, rows, w, bias, C);
    QL_CUDA_LAUNCH();
}

void launch_add_bias(float* x, const float* bias, int64_t N, int64_t C) {
    if (N * C == 0) return;
    add_bias_k<<<grid_for(N * C, 256, 65535), 256>>>(x, bias, N, C);
    QL_CUDA_LAUNCH();
}

void launch_reference_rows(const float* logits, int64_t B, int64_t S, int64_t R, int64_t V,
                           float* ref_logp, double* ref_lse, int32_t* ref_top1, int64_t row0) {
    if (B * S == 0) return;
    reference_rows_k<<<B * S, 1024>>>(logits, S, R, V, ref_logp, ref_lse, ref_top1, row0);
    QL_CUDA_LAUNCH();
}

void launch_score_rows(const float* logits, int64_t B, int64_t S, int64_t R, int64_t V,
                       const float* ref_logp, const double* ref_lse, const int32_t* ref_top1,
                       const int32_t* next, int64_t row0, RowStats* out) {
    if (B * S == 0) return;
    score_rows_k<<<B * S, 1024>>>(logits, S, R, V, ref_logp, ref_lse, ref_top1, next, row0, out);
    QL_CUDA_LAUNCH();
}

namespace {
__global__ void nll_tile_k(const float* z, int64_t vt, int64_t v0, const int32_t* next,
                           float* run_max, double* run_sum, float* target) {
    const float* row = z + blockIdx.x * vt;
    float m = -INFINITY;
    for (int64_t v = threadIdx.x; v < vt; v += blockDim.x) m = fmaxf(m, row[v]);
    m = block_max(m);
    double sum = 0.0;
    for (int64_t v = threadIdx.x; v < vt; v += blockDim.x)
        sum += exp(static_cast<double>(row[v] - m));
    sum = block_sum(sum);
    if (threadIdx.x != 0) return;
    const int64_t want = next[blockIdx.x] - v0;
    if (want >= 0 && want < vt) target[blockIdx.x] = row[want];
    if (v0 == 0) {
        run_max[blockIdx.x] = m;
        run_sum[blockIdx.x] = sum;
        return;
    }
    const float old = run_max[blockIdx.x];
    if (m > old) {
        run_sum[blockIdx.x] = run_sum[blockIdx.x] * exp(static_cast<double>(old) - m) + sum;
        run_max[blockIdx.x] = m;
    } else {
        run_sum[blockIdx.x] += sum * exp(static_cast<double>(m) - old);
    }
}

__global__ void nll_finish_k(const float* run_max, const double* run_sum, const float* target,
                             int64_t R, float* out) {
    const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    if (r < R)
        out[r] = static_cast<float>(static_cast<double>(run_max[r]) + log(run_sum[r]) -
                                    static_cast<double>(target[r]));
}
}  // namespace

void launch_nll_tile(const float* z, int64_t R, int64_t vt, int64_t v0, const int32_t* next,
                     float* run_max, double* run_sum, float* target) {
    if (R == 0 || vt == 0) return;
    nll_tile_k<<<R, 256>>>(z, vt, v0, next, run_max, run_sum, target);
    QL_CUDA_LAUNCH();
}

void launch_nll_finish(const float* run_max, const double* run_sum, const float* target, int64_t R,
                       float* out) {
    if (R == 0) return;
    nll_finish_k<<<grid_for(R, 256), 256>>>(run_max, run_sum, target, R, out);
    QL_CUDA_LAUNCH();
}

void launch_sq_diff_accumulate(const float* a, const float* b, int64_t n, double* partials,
                               double* acc, int64_t cols, int64_t ld) {
    sq_diff_partial_k<<<kPartials, 256>>>(a, b, n, cols, ld, partials);
    QL_CUDA_LAUNCH();
    sum_partials_k<<<1, 1024>>>(partials, kPartials, acc);
    QL_CUDA_LAUNCH();
}

void launch_f32_to_16(void* dst, Dtype dt, const float* src, int64_t n) {
    if (n == 0) return;
    QL_DISPATCH(dt, (f32_to_16_k<T><<<grid_for(n, 256), 256>>>(static_cast<T*>(dst), src, n)));
}

void launch_16_to_f32(float* dst, const void* src, Dtype dt, int64_t n) {
    if (n == 0) return;
    QL_DISPATCH(dt,
                (t16_to_f32_k<T><<<grid_for(n, 256), 256>>>(dst, static_cast<const T*>(src), n)));
}

namespace {

constexpr int kWeightErrorThreads = 256;

template <typename T>
__global__ void weight_error_partials_k(const T* w, const T* wh, int64_t n, double* partial,
                                        const float* importance, int64_t n_per_row) {
    double acc[kWeightErrorSums] = {0, 0, 0, 0, 0, 0, 0, 0};
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += stride) {
        const double a = to_f32(w[i]), b = to_f32(wh[i]), e = b - a;
        acc[0] += e * e;
        acc[1] += fabs(e);
        acc[2] = fmax(acc[2], fabs(e));
        acc[3] += a * a;
        acc[4] += b * b;
        acc[5] += a * b;
        if (importance) {
            const double imp = importance[i % n_per_row];
            acc[6] += imp * (e * e);
            acc[7] += imp * a * a;
        }
    }
    __shared__ double red[kWeightErrorSums][kWeightErrorThreads];
    for (int k = 0; k < kWeightErrorSums; ++k) red[k][threadIdx.x] = acc[k];
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half)
            for (int k = 0; k < kWeightErrorSums; ++k)
                red[k][threadIdx.x] = k == 2 ? fmax(red[k][threadIdx.x], red[k][threadIdx.x + half])
                                             : red[k][threadIdx.x] + red[k][threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x < kWeightErrorSums)
        partial[blockIdx.x * kWeightErrorSums + threadIdx.x] = red[threadIdx.x][0];
}

}  // namespace

void launch_weight_error_partials(const void* w, const void* w_hat, Dtype dt, int64_t n,
                                  double* partial, const float* importance, int64_t n_per_row) {
    QL_DISPATCH(dt, (weight_error_partials_k<T><<<kWeightErrorBlocks, kWeightErrorThreads>>>(
                        static_cast<const T*>(w), static_cast<const T*>(w_hat), n, partial,
                        importance, n_per_row)));
}

void launch_fill_f32(float* dst, float value, int64_t n) {
    if (n == 0) return;
    fill_f32_k<<<grid_for(n, 256), 256>>>(dst, value, n);
    QL_CUDA_LAUNCH();
}

void launch_random_16(void* dst, Dtype dt, int64_t n, uint64_t seed, float scale) {
    if (n == 0) return;
    QL_DISPATCH(dt,
                (random_16_k<T><<<grid_for(n, 256), 256>>>(static_cast<T*>(dst), n, seed, scale)));
}

namespace {

// One warp per block of 32 (Q8_0) or 256 (Q8_K) values; lanes own strided elements and the
// block's maximum is a warp reduction (max is exact, so the order does not matter).
// ggml's Q8_0 as kernels.cpp's round_q8_0: d = amax/127 kept as F16, q = round(x/d) (half away).
__global__ void round_q8_0_k(float* x, int64_t n_blocks, int64_t blocks_per_row, int64_t C) {
    const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + threadIdx.x / 32;
    if (b >= n_blocks) return;
    const int lane = threadIdx.x % 32;
    float* p = x + (b / blocks_per_row) * C + (b % blocks_per_row) * 32;
    const float v = p[lane];
    const float amax = warp_max(fabsf(v));
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    const float d16 = __half2float(__float2half_rn(d));
    p[lane] = d16 * roundf(v * id);
}

// ggml's Q8_K as kernels.cpp's round_q8_k: the first value of largest magnitude (with its
// sign) maps to −127, d = 1/iscale, q = nearest-even(iscale·x) capped at 127.
__global__ void round_q8_k_k(float* x, int64_t n_blocks, int64_t blocks_per_row, int64_t C) {
    const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + threadIdx.x / 32;
    if (b >= n_blocks) return;
    const int lane = threadIdx.x % 32;
    float* p = x + (b / blocks_per_row) * C + (b % blocks_per_row) * 256;
    // The CPU keeps the first index reaching the maximum |x|: reduce (|x|, −index) pairs.
    float best = -1.0f;
    int best_i = 0;
    for (int i = lane; i < 256; i += 32) {
        const float a = fabsf(p[i]);
        if (a > best) best = a, best_i = i;
    }
    for (int o = 16; o > 0; o >>= 1) {
        const float ob = __shfl_xor_sync(0xffffffffu, best, o);
        const int oi = __shfl_xor_sync(0xffffffffu, best_i, o);
        if (ob > best || (ob == best && oi < best_i)) best = ob, best_i = oi;
    }
    if (best == 0.0f) {
        for (int i = lane; i < 256; i += 32) p[i] = 0.0f;
        return;
    }
    const float mx = p[best_i];
    const float iscale = -127.0f / mx, d = 1.0f / iscale;
    for (int i = lane; i < 256; i += 32) {
        const int q = min(127, __float2int_rn(__fmul_rn(iscale, p[i])));
        p[i] = __fmul_rn(d, static_cast<float>(q));
    }
}

__global__ void round_16_k(float* x, int64_t n, bool bf16) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        x[i] = bf16 ? __bfloat162float(__float2bfloat16_rn(x[i]))
                    : __half2float(__float2half_rn(x[i]));
}

}  // namespace

void launch_round_activations(float* x, int64_t N, int64_t C, ActRound kind) {
    if (N == 0 || kind == ActRound::None) return;
    if (kind == ActRound::F16 || kind == ActRound::BF16) {
        round_16_k<<<grid_for(N * C, 256), 256>>>(x, N * C, kind == ActRound::BF16);
    } else {
        const int64_t block = kind == ActRound::Q8_0 ? 32 : 256;
        // The CPU rounds whole blocks only; a partial tail block stays as it is.
        const int64_t per_row = C / block, n_blocks = N * per_row;
        if (n_blocks == 0) return;
        const unsigned grid = static_cast<unsigned>((n_blocks + 7) / 8);
        if (kind == ActRound::Q8_0)
            round_q8_0_k<<<grid, 256>>>(x, n_blocks, per_row, C);
        else
            round_q8_k_k<<<grid, 256>>>(x, n_blocks, per_row, C);
    }
    QL_CUDA_LAUNCH();
}

}  // namespace quantlens::cuda
