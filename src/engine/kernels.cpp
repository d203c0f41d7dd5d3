// Forward-pass kernels: see kernels.h for shapes and contracts.
#include "engine/kernels.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <numbers>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "core/parallel.h"
#include "engine/blocked_attention.h"

namespace quantlens {

void engine_init_blas() {
    static std::once_flag once;
    std::call_once(once, [] { openblas_set_num_threads(1); });
}

void rmsnorm_forward(float* out, const float* in, const float* weight, int64_t N, int64_t C,
                     float eps) {
    rmsnorm_rows(out, in, weight, N, C, [&](const float* x) {
        double ss = 0.0;  // double: rows up to tens of thousands of channels
        for (int64_t c = 0; c < C; ++c) ss += static_cast<double>(x[c]) * x[c];
        return static_cast<float>(1.0 / std::sqrt(ss / C + eps));
    });
}

void matmul_forward(float* out, const float* in, const float* weight, const float* bias, int64_t N,
                    int64_t IN, int64_t OUT) {
    const auto threads = static_cast<int64_t>(num_threads());
    // Split over rows when there are many (each thread streams all of W once), else over
    // output features, so that every thread runs one large sgemm.
    if (N >= 32 * threads || OUT < 64 * threads) {
        const int64_t step = (N + threads - 1) / threads;
        parallel_for(
            static_cast<size_t>(N),
            [&](size_t begin, size_t end) {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(end - begin),
                            static_cast<int>(OUT), static_cast<int>(IN), 1.0f, in + begin * IN,
                            static_cast<int>(IN), weight, static_cast<int>(IN), 0.0f,
                            out + begin * OUT, static_cast<int>(OUT));
            },
            static_cast<size_t>(std::max<int64_t>(step, 1)));
    } else {
        const int64_t step = (OUT + threads - 1) / threads;
        parallel_for(
            static_cast<size_t>(OUT),
            [&](size_t begin, size_t end) {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(N),
                            static_cast<int>(end - begin), static_cast<int>(IN), 1.0f, in,
                            static_cast<int>(IN), weight + begin * IN, static_cast<int>(IN), 0.0f,
                            out + begin, static_cast<int>(OUT));
            },
            static_cast<size_t>(std::max<int64_t>(step, 1)));
    }
    if (bias) {
        for (int64_t n = 0; n < N; ++n)
            for (int64_t o = 0; o < OUT; ++o) out[n * OUT + o] += bias[o];
    }
}

void matmul_forward_ref(float* out, const float* in, const float* weight, const float* bias,
                        int64_t N, int64_t IN, int64_t OUT) {
    for (int64_t n = 0; n < N; ++n) {
        for (int64_t o = 0; o < OUT; ++o) {
            double acc = bias ? bias[o] : 0.0;
            for (int64_t i = 0; i < IN; ++i)
                acc += static_cast<double>(in[n * IN + i]) * weight[o * IN + i];
            out[n * OUT + o] = static_cast<float>(acc);
        }
    }
}

void rope_tables(std::span<const double> freqs, int64_t T, bool bf16_freqs,
                 std::vector<float>& cos_table, std::vector<float>& sin_table, double mscale) {
    const int64_t half = static_cast<int64_t>(freqs.size());
    cos_table.resize(static_cast<size_t>(T * half));
    sin_table.resize(cos_table.size());
    for (int64_t t = 0; t < T; ++t) {
        for (int64_t i = 0; i < half; ++i) {
            double freq = freqs[static_cast<size_t>(i)];
            if (bf16_freqs) freq = bf16_to_f32(f32_to_bf16(static_cast<float>(freq)));
            const double angle = static_cast<double>(t) * freq;  // in double, then rounded
            cos_table[static_cast<size_t>(t * half + i)] =
                static_cast<float>(std::cos(angle) * mscale);
            sin_table[static_cast<size_t>(t * half + i)] =
                static_cast<float>(std::sin(angle) * mscale);
        }
    }
}

void rope_forward(float* x, int64_t B, int64_t T, int64_t H, int64_t D,
                  std::span<const double> freqs, bool neox, bool bf16_freqs, double mscale) {
    const auto half = static_cast<int64_t>(freqs.size());  // rotated pairs
    QL_ASSERT(half > 0 && 2 * half <= D);
    std::vector<float> cos_t, sin_t;
    rope_tables(freqs, T, bf16_freqs, cos_t, sin_t, mscale);
    parallel_for(
        static_cast<size_t>(B * T),
        [&](size_t begin, size_t end) {
            for (size_t bt = begin; bt < end; ++bt) {
                const int64_t t = static_cast<int64_t>(bt) % T;
                const float* c = cos_t.data() + t * half;
                const float* s = sin_t.data() + t * half;
                for (int64_t h = 0; h < H; ++h) {
                    float* v = x + (bt * H + h) * D;
                    for (int64_t i = 0; i < half; ++i) {
                        const int64_t a = neox ? i : 2 * i;
                        const int64_t b = neox ? i + half : 2 * i + 1;
                        const float x0 = v[a], x1 = v[b];
                        v[a] = x0 * c[i] - x1 * s[i];
                        v[b] = x0 * s[i] + x1 * c[i];
                    }
                }
            }
        },
        16);
}

void attention_forward(float* out, const float* q, const float* k, const float* v, int64_t B,
                       int64_t T, int64_t H, int64_t KV, int64_t D, const AttentionParams& p) {
    blocked_attention(out, q, k, v, B, T, H, KV, D, p,
                      [&](float* s, int64_t lo, int64_t hi, int64_t) {
                          if (p.softcap > 0)
                              for (int64_t j = lo; j < hi; ++j)
                                  s[j] = p.softcap * std::tanh(s[j] / p.softcap);
                          float mx = s[lo];
                          for (int64_t j = lo + 1; j < hi; ++j) mx = std::max(mx, s[j]);
                          return std::pair{mx, 0.0f};
                      });
}

void attention_forward_ref(float* out, const float* q, const float* k, const float* v, int64_t B,
                           int64_t T, int64_t H, int64_t KV, int64_t D,
                           const AttentionParams& prm) {
    reference_attention(out, q, k, v, nullptr, B, T, H, KV, D, prm);
}

ActRounding ggml_act_rounding(GgmlType t) {
    switch (t) {
        case GgmlType::F32:
            return ActRounding::None;
        case GgmlType::F16:
            return ActRounding::F16;
        case GgmlType::BF16:
            return ActRounding::BF16;
        case GgmlType::Q4_0:
        case GgmlType::Q4_1:
        case GgmlType::Q5_0:
        case GgmlType::Q5_1:
        case GgmlType::Q8_0:
        case GgmlType::IQ4_NL:
        case GgmlType::MXFP4:
            return ActRounding::Q8_0;
        default:
            return ActRounding::Q8_K;  // K-quants, IQ2/IQ3/IQ1, IQ4_XS, TQ*
    }
}

namespace {

// ggml's Q8_0: d = amax/127 stored as F16, q = round(x/d).
void round_q8_0(float* x, int64_t n) {
    for (int64_t b = 0; b + 32 <= n; b += 32) {
        float amax = 0.0f;
        for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[b + i]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        const float d16 = round_to_f16(d);
        for (int i = 0; i < 32; ++i) x[b + i] = d16 * std::round(x[b + i] * id);
    }
}

// ggml's Q8_K: the largest-magnitude value (with its sign) maps to −127, d = 1/iscale in f32.
void round_q8_k(float* x, int64_t n) {
    for (int64_t b = 0; b + 256 <= n; b += 256) {
        float amax = 0.0f, mx = 0.0f;
        for (int i = 0; i < 256; ++i)
            if (std::fabs(x[b + i]) > amax) amax = std::fabs(x[b + i]), mx = x[b + i];
        if (amax == 0.0f) {
            std::fill(x + b, x + b + 256, 0.0f);
            continue;
        }
        const float iscale = -127.0f / mx, d = 1.0f / iscale;
        for (int i = 0; i < 256; ++i)
            x[b + i] = d * static_cast<float>(
                               std::min(127, static_cast<int>(std::nearbyint(iscale * x[b + i]))));
    }
}

}  // namespace

void round_activations(float* x, int64_t N, int64_t C, ActRounding kind) {
    if (kind == ActRounding::None) return;
    parallel_for(
        static_cast<size_t>(N),
        [&](size_t begin, size_t end) {
            for (size_t r = begin; r < end; ++r) {
                float* row = x + r * C;
                switch (kind) {
                    case ActRounding::F16:
                        for (int64_t i = 0; i < C; ++i) row[i] = round_to_f16(row[i]);
                        break;
                    case ActRounding::BF16:
                        for (int64_t i = 0; i < C; ++i) row[i] = bf16_to_f32(f32_to_bf16(row[i]));
                        break;
                    case ActRounding::Q8_0:
                        round_q8_0(row, C);
                        break;
                    case ActRounding::Q8_K:
                        round_q8_k(row, C);
                        break;
                    case ActRounding::None:
                        break;
                }
            }
        },
        16);
}

void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) {
    parallel_for(
        static_cast<size_t>(n),
        [&](size_t begin, size_t end) {
            for (size_t i = begin; i < end; ++i) {
                const float g = gate[i];
                out[i] = g / (1.0f + std::exp(-g)) * up[i];
            }
        },
        4096);
}

void geglu_tanh_forward(float* out, const float* gate, const float* up, int64_t n) {
    const double k = std::sqrt(2.0 / std::numbers::pi);
    parallel_for(
        static_cast<size_t>(n),
        [&](size_t begin, size_t end) {
            for (size_t i = begin; i < end; ++i) {
                const float g = gate[i];
                const float inner = static_cast<float>(k) * (g + 0.044715f * g * g * g);
                out[i] = 0.5f * g * (1.0f + std::tanh(inner)) * up[i];
            }
        },
        4096);
}

void softcap_forward(float* x, int64_t n, float c) {
    for (int64_t i = 0; i < n; ++i) x[i] = c * std::tanh(x[i] / c);
}

void residual_forward(float* x, const float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

}  // namespace quantlens
