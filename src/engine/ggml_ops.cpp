#include "engine/ggml_ops.h"

// Separately rounded multiplies and adds unless written as std::fma: ggml's float order is
// the specification, and -march=native must not fuse what ggml-cpu does not.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include "core/half.h"
#include "core/parallel.h"

namespace quantlens {

namespace {

// An AVX2 register's horizontal sum as ggml and llamafile reduce it: (high + low) halves,
// then (x0 + x2) and (x1 + x3), then their sum.
inline float hsum8(const float* a) {
    const float s0 = a[0] + a[4], s1 = a[1] + a[5], s2 = a[2] + a[6], s3 = a[3] + a[7];
    return (s0 + s2) + (s1 + s3);
}

// Σ a[i]·b[i] over n (a multiple of 8) F16-valued floats, in 8 lanes (lane = i mod 8). The
// products of two F16 values are exact in float, so fused or not they round the same.
inline float dot_lanes(const float* a, const float* b, int64_t n) {
    float acc[8] = {};
    for (int64_t i = 0; i < n; i += 8)
        for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
    return hsum8(acc);
}

// dot_lanes of R rows a + r·stride with b at once: the same sums, with R independent
// accumulator chains so that the adds do not wait on each other.
template <int R>
inline void dot_lanes_rows(const float* a, int64_t stride, const float* b, int64_t n, float* out) {
    float acc[R][8] = {};
    for (int64_t i = 0; i < n; i += 8)
        for (int r = 0; r < R; ++r)
            for (int l = 0; l < 8; ++l) acc[r][l] += a[r * stride + i + l] * b[i + l];
    for (int r = 0; r < R; ++r) out[r] = hsum8(acc[r]);
}

#if defined(__AVX2__) && defined(__FMA__)
// dot_lanes_rows<4> in AVX2 registers (a fused multiply-add of two F16 values rounds as the
// separate multiply and add do: the product is exact).
inline void dot_lanes_rows4_avx2(const float* a, int64_t stride, const float* b, int64_t n,
                                 float* out) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    for (int64_t i = 0; i < n; i += 8) {
        const __m256 bv = _mm256_loadu_ps(b + i);
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), bv, acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + stride + i), bv, acc1);
        acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + 2 * stride + i), bv, acc2);
        acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + 3 * stride + i), bv, acc3);
    }
    float lanes[4][8];
    _mm256_storeu_ps(lanes[0], acc0);
    _mm256_storeu_ps(lanes[1], acc1);
    _mm256_storeu_ps(lanes[2], acc2);
    _mm256_storeu_ps(lanes[3], acc3);
    for (int r = 0; r < 4; ++r) out[r] = hsum8(lanes[r]);
}
#endif

// out[r] = dot_lanes(a + r·stride, b, n) for r < rows.
inline void dot_lanes_many(const float* a, int64_t stride, int64_t rows, const float* b, int64_t n,
                           float* out) {
    int64_t r = 0;
#if defined(__AVX2__) && defined(__FMA__)
    for (; r + 4 <= rows; r += 4) dot_lanes_rows4_avx2(a + r * stride, stride, b, n, out + r);
#endif
    for (; r + 4 <= rows; r += 4) dot_lanes_rows<4>(a + r * stride, stride, b, n, out + r);
    for (; r < rows; ++r) out[r] = dot_lanes(a + r * stride, b, n);
}

}  // namespace

float expf_ggml(float x) {
    // One lane of ggml_v_expf: 2^n·(1 + j) with n = round(x/ln2) by the 1.5·2^23 shift,
    // b = x − n·ln2 in two parts, j a degree-5 polynomial of b; outside |n| ≤ 126 the
    // scale is split in two factors so that it neither overflows nor underflows early.
    const float shift = 0x1.8p23f;
    const float z = std::fma(x, 0x1.715476p+0f, shift);
    const float n = z - shift;
    const float b = std::fma(-n, 0x1.7f7d1cp-20f, std::fma(-n, 0x1.62e4p-1f, x));
    const uint32_t e = float_bits(z) << 23;
    const float k = bits_float(e + float_bits(1.0f));
    const float u = b * b;
    const float j = std::fma(std::fma(std::fma(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u,
                                      std::fma(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
                             u, 0x1.ffffecp-1f * b);
    if (!(std::fabs(n) > 126.0f)) return std::fma(j, k, k);
    const uint32_t g = n <= 0.0f ? 0x82000000u : 0u;
    const float s1 = bits_float(g + 0x7f000000u);
    const float s2 = bits_float(e - g);
    if (std::fabs(n) > 192.0f) return s1 * s1;
    return std::fma(s2, j, s2) * s1;
}

void rmsnorm_ggml(float* out, const float* in, const float* weight, int64_t N, int64_t C,
                  float eps) {
    parallel_for(
        static_cast<size_t>(N),
        [&](size_t begin, size_t end) {
            for (size_t r = begin; r < end; ++r) {
                const float* x = in + r * C;
                float* y = out + r * C;
                double sum = 0.0;
                for (int64_t c = 0; c < C; ++c) sum += static_cast<double>(x[c] * x[c]);
                const auto mean = static_cast<float>(sum / static_cast<double>(C));
                const float scale = 1.0f / std::sqrt(mean + eps);
                for (int64_t c = 0; c < C; ++c) y[c] = x[c] * scale * weight[c];
            }
        },
        16);
}

void rope_ggml(float* x, int64_t B, int64_t T, int64_t H, int64_t D, const RopeGgml& rope) {
    const int64_t R = rope.dims, half = R / 2;
    const float theta_scale = std::pow(rope.freq_base, -2.0f / static_cast<float>(R));
    parallel_for(
        static_cast<size_t>(T),
        [&](size_t begin, size_t end) {
            std::vector<float> cos_t(half), sin_t(half);
            for (size_t t = begin; t < end; ++t) {
                float theta = static_cast<float>(t);
                for (int64_t i = 0; i < half; ++i) {
                    const float ff = rope.freq_factors.empty() ? 1.0f : rope.freq_factors[i];
                    const float angle = rope.freq_scale * (theta / ff);
                    cos_t[i] = std::cos(angle);
                    sin_t[i] = std::sin(angle);
                    theta *= theta_scale;
                }
                for (int64_t b = 0; b < B; ++b) {
                    for (int64_t h = 0; h < H; ++h) {
                        float* v = x + ((b * T + static_cast<int64_t>(t)) * H + h) * D;
                        for (int64_t i = 0; i < half; ++i) {
                            float& a = rope.neox ? v[i] : v[2 * i];
                            float& c = rope.neox ? v[i + half] : v[2 * i + 1];
                            const float x0 = a, x1 = c, co = cos_t[i], si = sin_t[i];
                            // ggml-cpu's `x0*cos − x1*sin` and `x0*sin + x1*cos`, as GCC
                            // fuses them (the second product is rounded, the first fused).
                            a = std::fma(x0, co, -(x1 * si));
                            c = std::fma(x0, si, x1 * co);
                        }
                    }
                }
            }
        },
        8);
}

void attention_ggml(float* out, const float* q, const float* k, const float* v, int64_t B,
                    int64_t T, int64_t H, int64_t KV, int64_t D, float scale, int64_t window) {
    const int64_t group = H / KV, TP = (T + 7) / 8 * 8;  // TP: time padded to 8-lane groups
    // K as the F16 cache holds it, kc[b][g][t][d]; V transposed as llama.cpp's V cache is,
    // vt[b][g][d][t] (zeros past T), so each output channel is one dot product over time.
    std::vector<float> kc(B * KV * T * D), vt(B * KV * D * TP, 0.0f);
    parallel_for(
        static_cast<size_t>(B * KV),
        [&](size_t begin, size_t end) {
            for (size_t bg = begin; bg < end; ++bg) {
                const auto b = static_cast<int64_t>(bg) / KV, g = static_cast<int64_t>(bg) % KV;
                float* kd = kc.data() + static_cast<int64_t>(bg) * T * D;
                float* vd = vt.data() + static_cast<int64_t>(bg) * D * TP;
                for (int64_t t = 0; t < T; ++t) {
                    const int64_t src = ((b * T + t) * KV + g) * D;
                    for (int64_t d = 0; d < D; ++d) {
                        kd[t * D + d] = round_to_f16(k[src + d]);
                        vd[d * TP + t] = round_to_f16(v[src + d]);
                    }
                }
            }
        },
        1);
    parallel_for(
        static_cast<size_t>(B * H * T),
        [&](size_t begin, size_t end) {
            std::vector<float> qf(D), s(TP);
            for (size_t job = begin; job < end; ++job) {
                const auto i = static_cast<int64_t>(job % T);  // query position
                const auto h = static_cast<int64_t>((job / T) % H);
                const auto b = static_cast<int64_t>(job / (T * H));
                const float* kb = kc.data() + (b * KV + h / group) * T * D;
                const float* vb = vt.data() + (b * KV + h / group) * D * TP;
                const float* qrow = q + ((b * T + i) * H + h) * D;
                for (int64_t d = 0; d < D; ++d) qf[d] = round_to_f16(qrow[d]);
                const int64_t first = window > 0 ? std::max<int64_t>(0, i - window + 1) : 0;
                const int64_t g0 = first / 8 * 8, padded = (i + 1 + 7) / 8 * 8;
                dot_lanes_many(kb + first * D, D, i + 1 - first, qf.data(), D, s.data() + first);
                float mx = -std::numeric_limits<float>::infinity();
                for (int64_t j = first; j <= i; ++j) {
                    s[j] *= scale;
                    mx = std::max(mx, s[j]);
                }
                // Masked scores are −inf and their exp exactly 0.
                double sum = 0.0;
                for (int64_t j0 = g0; j0 < padded; j0 += 8) {
                    for (int64_t j = j0; j < j0 + 8; ++j)
                        s[j] = j >= first && j <= i ? expf_ggml(s[j] - mx) : 0.0f;
                    sum += static_cast<double>(hsum8(s.data() + j0));
                }
                const auto inv = static_cast<float>(1.0 / sum);
                for (int64_t j = first; j <= i; ++j) s[j] = round_to_f16(s[j] * inv);
                float* o = out + ((b * T + i) * H + h) * D;
                dot_lanes_many(vb + g0, TP, D, s.data() + g0, padded - g0, o);
            }
        },
        16);
}

void swiglu_ggml(float* gate, const float* up, int64_t N, int64_t F) {
    const int64_t vec = F / 8 * 8;
    parallel_for(
        static_cast<size_t>(N),
        [&](size_t begin, size_t end) {
            for (size_t r = begin; r < end; ++r) {
                float* g = gate + r * F;
                const float* u = up + r * F;
                for (int64_t c = 0; c < vec; ++c) g[c] = g[c] / (1.0f + expf_ggml(0.0f - g[c]));
                for (int64_t c = vec; c < F; ++c) g[c] = g[c] / (1.0f + std::exp(-g[c]));
                for (int64_t c = 0; c < F; ++c) g[c] = g[c] * u[c];
            }
        },
        16);
}

}  // namespace quantlens
