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
#include "engine/kernels.h"

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

#if defined(__AVX2__) && defined(__FMA__)
// A 4 × 3 tile of dot_lanes in AVX2 registers, as llamafile's tinyBLAS tiles its F16 products
// (a fused multiply-add of two F16 values rounds as the separate multiply and add do: the
// product is exact).
inline void dot_lanes_4x3_avx2(const float* a, int64_t sa, const float* b, int64_t sb, int64_t n,
                               float* out, int64_t ldo) {
    __m256 acc[3][4];
    for (auto& row : acc)
        for (__m256& x : row) x = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += 8) {
        const __m256 a0 = _mm256_loadu_ps(a + i), a1 = _mm256_loadu_ps(a + sa + i);
        const __m256 a2 = _mm256_loadu_ps(a + 2 * sa + i), a3 = _mm256_loadu_ps(a + 3 * sa + i);
        for (int c = 0; c < 3; ++c) {
            const __m256 bv = _mm256_loadu_ps(b + c * sb + i);
            acc[c][0] = _mm256_fmadd_ps(a0, bv, acc[c][0]);
            acc[c][1] = _mm256_fmadd_ps(a1, bv, acc[c][1]);
            acc[c][2] = _mm256_fmadd_ps(a2, bv, acc[c][2]);
            acc[c][3] = _mm256_fmadd_ps(a3, bv, acc[c][3]);
        }
    }
    for (int c = 0; c < 3; ++c)
        for (int r = 0; r < 4; ++r) {
            float lanes[8];
            _mm256_storeu_ps(lanes, acc[c][r]);
            out[c * ldo + r] = hsum8(lanes);
        }
}
#endif

// out[c·ldo + r] = dot_lanes(a + r·sa, b + c·sb, n) for r < rows, c < cols: each product is
// the same sum however the tile is cut.
void dot_lanes_tile(const float* a, int64_t sa, int64_t rows, const float* b, int64_t sb,
                    int64_t cols, int64_t n, float* out, int64_t ldo) {
    int64_t r0 = 0;
#if defined(__AVX2__) && defined(__FMA__)
    if (cols == 3)
        for (; r0 + 4 <= rows; r0 += 4)
            dot_lanes_4x3_avx2(a + r0 * sa, sa, b, sb, n, out + r0, ldo);
#endif
    for (int64_t c = 0; c < cols; ++c)
        for (int64_t r = r0; r < rows; ++r) out[c * ldo + r] = dot_lanes(a + r * sa, b + c * sb, n);
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

void expf_ggml8(const float* x, float* y) {
#if defined(__AVX2__) && defined(__FMA__)
    // The same steps on 8 lanes (ggml_v_expf); the split-scale path only when a lane needs it.
    const __m256 v = _mm256_loadu_ps(x);
    const __m256 shift = _mm256_set1_ps(0x1.8p23f);
    const __m256 z = _mm256_fmadd_ps(v, _mm256_set1_ps(0x1.715476p+0f), shift);
    const __m256 n = _mm256_sub_ps(z, shift);
    const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f),
                                      _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), v));
    const __m256i e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
    const __m256 k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_set1_epi32(0x3f800000)));
    const __m256 u = _mm256_mul_ps(b, b);
    const __m256 j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(
            _mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
            _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f))),
        u, _mm256_mul_ps(_mm256_set1_ps(0x1.ffffecp-1f), b));
    const __m256 abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), n);
    const __m256 big = _mm256_cmp_ps(abs_n, _mm256_set1_ps(126.0f), _CMP_GT_OQ);
    if (_mm256_movemask_ps(big) == 0) {
        _mm256_storeu_ps(y, _mm256_fmadd_ps(j, k, k));
        return;
    }
    const __m256i g =
        _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)),
                         _mm256_set1_epi32(static_cast<int>(0x82000000u)));
    const __m256 s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f000000)));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
    const __m256 huge = _mm256_cmp_ps(abs_n, _mm256_set1_ps(192.0f), _CMP_GT_OQ);
    const __m256 split = _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1);
    __m256 r = _mm256_blendv_ps(_mm256_fmadd_ps(j, k, k), split, big);
    r = _mm256_blendv_ps(r, _mm256_mul_ps(s1, s1), huge);
    _mm256_storeu_ps(y, r);
#else
    for (int l = 0; l < 8; ++l) y[l] = expf_ggml(x[l]);
#endif
}

void rmsnorm_ggml(float* out, const float* in, const float* weight, int64_t N, int64_t C,
                  float eps) {
    rmsnorm_rows(out, in, weight, N, C, [&](const float* x) {
        double sum = 0.0;
        for (int64_t c = 0; c < C; ++c) sum += static_cast<double>(x[c] * x[c]);
        const auto mean = static_cast<float>(sum / static_cast<double>(C));
        return 1.0f / std::sqrt(mean + eps);
    });
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
    // Queries go in blocks of three (a tile's width): scores of the block's keys, then per
    // query its softmax, then the block's outputs. Scores and probabilities past a query's
    // own keys are exact zeros, which leave every lane sum as it is.
    constexpr int64_t QB = 3;
    const int64_t blocks = (T + QB - 1) / QB;
    parallel_for(
        static_cast<size_t>(B * H * blocks),
        [&](size_t begin, size_t end) {
            std::vector<float> qf(QB * D), s(QB * TP), o(QB * D);
            for (size_t job = begin; job < end; ++job) {
                const int64_t i0 = static_cast<int64_t>(job % blocks) * QB;
                const auto h = static_cast<int64_t>((job / blocks) % H);
                const auto b = static_cast<int64_t>(job / (blocks * H));
                const int64_t nq = std::min(QB, T - i0), last = i0 + nq - 1;
                const float* kb = kc.data() + (b * KV + h / group) * T * D;
                const float* vb = vt.data() + (b * KV + h / group) * D * TP;
                for (int64_t r = 0; r < nq; ++r) {
                    const float* qrow = q + ((b * T + i0 + r) * H + h) * D;
                    for (int64_t d = 0; d < D; ++d) qf[r * D + d] = round_to_f16(qrow[d]);
                }
                auto first_key = [&](int64_t i) {
                    return window > 0 ? std::max<int64_t>(0, i - window + 1) : 0;
                };
                const int64_t g0 = first_key(i0) / 8 * 8, padded = (last + 1 + 7) / 8 * 8;
                dot_lanes_tile(kb + g0 * D, D, last + 1 - g0, qf.data(), D, nq, D, s.data() + g0,
                               TP);
                for (int64_t r = 0; r < nq; ++r) {
                    const int64_t i = i0 + r, first = first_key(i);
                    float* e = s.data() + r * TP;
                    float mx = -std::numeric_limits<float>::infinity();
                    for (int64_t j = first; j <= i; ++j) {
                        e[j] *= scale;
                        mx = std::max(mx, e[j]);
                    }
                    // Masked scores are −inf and their exp exactly 0.
                    double sum = 0.0;
                    for (int64_t j0 = first / 8 * 8; j0 < padded; j0 += 8) {
                        float* grp = e + j0;
                        for (int l = 0; l < 8; ++l) grp[l] = grp[l] - mx;
                        expf_ggml8(grp, grp);
                        for (int64_t j = j0; j < j0 + 8; ++j)
                            if (j < first || j > i) e[j] = 0.0f;
                        sum += static_cast<double>(hsum8(grp));
                    }
                    const auto inv = static_cast<float>(1.0 / sum);
                    for (int64_t j = g0; j < first; ++j) e[j] = 0.0f;
                    for (int64_t j = first; j <= i; ++j) e[j] = round_to_f16(e[j] * inv);
                }
                dot_lanes_tile(vb + g0, TP, D, s.data() + g0, TP, nq, padded - g0, o.data(), D);
                for (int64_t r = 0; r < nq; ++r)
                    std::copy_n(o.data() + r * D, D, out + ((b * T + i0 + r) * H + h) * D);
            }
        },
        4);
}

bool matmul_f32_ggml_applies(int64_t N, int64_t IN, int64_t OUT) {
    return N >= 2 && OUT % 4 == 0 && IN % 8 == 0;
}

void matmul_f32_ggml(float* out, const float* in, const float* w, int64_t N, int64_t IN,
                     int64_t OUT) {
    parallel_for(
        static_cast<size_t>(N),
        [&](size_t begin, size_t end) {
            for (size_t r = begin; r < end; ++r)
                for (int64_t o = 0; o < OUT; ++o) {
                    const float* a = w + o * IN;
                    const float* x = in + r * IN;
                    float acc[8] = {};
                    for (int64_t i = 0; i < IN; i += 8)
                        for (int l = 0; l < 8; ++l) acc[l] = std::fma(a[i + l], x[i + l], acc[l]);
                    out[r * OUT + o] = hsum8(acc);
                }
        },
        4);
}

void softmax_ggml(float* x, int64_t n) {
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
    double sum = 0.0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int l = 0; l < 8; ++l) x[i + l] = x[i + l] - mx;
        expf_ggml8(x + i, x + i);
        sum += static_cast<double>(hsum8(x + i));
    }
    for (; i < n; ++i) {
        x[i] = std::exp(x[i] - mx);
        sum += static_cast<double>(x[i]);
    }
    const auto inv = static_cast<float>(1.0 / sum);
    for (int64_t j = 0; j < n; ++j) x[j] = x[j] * inv;
}

void swiglu_ggml(float* gate, const float* up, int64_t N, int64_t F) {
    const int64_t vec = F / 8 * 8;
    parallel_for(
        static_cast<size_t>(N),
        [&](size_t begin, size_t end) {
            for (size_t r = begin; r < end; ++r) {
                float* g = gate + r * F;
                const float* u = up + r * F;
                for (int64_t c = 0; c < vec; c += 8) {
                    float e[8];
                    for (int l = 0; l < 8; ++l) e[l] = 0.0f - g[c + l];
                    expf_ggml8(e, e);
                    for (int l = 0; l < 8; ++l) g[c + l] = g[c + l] / (1.0f + e[l]);
                }
                for (int64_t c = vec; c < F; ++c) g[c] = g[c] / (1.0f + std::exp(-g[c]));
                for (int64_t c = 0; c < F; ++c) g[c] = g[c] * u[c];
            }
        },
        16);
}

}  // namespace quantlens
