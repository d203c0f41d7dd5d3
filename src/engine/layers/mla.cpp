// Multi-head latent attention (see mla.h).
#include "engine/layers/mla.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/kernels.h"

namespace quantlens {

float mla_score_scale(const ModelConfig& c) {
    return static_cast<float>(yarn_score_scale(c) /
                              std::sqrt(static_cast<double>(c.qk_nope_dim + c.head_dim)));
}

void mla_latent_attention(float* out, const float* q_lat, const float* q_rope, const float* ckv,
                          const float* k_rope, int64_t B, int64_t T, int64_t H, int64_t L,
                          int64_t R, float scale) {
    const int64_t N = B * T, D = L + R;
    // One kv head of D = L + R channels: keys [c | kr], values [c | 0] (the zero channels
    // give zero outputs, dropped below).
    std::vector<float> q(N * H * D), k(N * D), v(N * D, 0.0f), o(N * H * D);
    for (int64_t n = 0; n < N; ++n) {
        for (int64_t h = 0; h < H; ++h) {
            std::copy_n(q_lat + (n * H + h) * L, L, q.data() + (n * H + h) * D);
            std::copy_n(q_rope + (n * H + h) * R, R, q.data() + (n * H + h) * D + L);
        }
        std::copy_n(ckv + n * L, L, k.data() + n * D);
        std::copy_n(k_rope + n * R, R, k.data() + n * D + L);
        std::copy_n(ckv + n * L, L, v.data() + n * D);
    }
    AttentionParams params;
    params.scale = scale;
    attention_forward(o.data(), q.data(), k.data(), v.data(), B, T, H, 1, D, params);
    for (int64_t r = 0; r < N * H; ++r) std::copy_n(o.data() + r * D, L, out + r * L);
}

void mla_latent_attention_ref(float* out, const float* q_lat, const float* q_rope, const float* ckv,
                              const float* k_rope, int64_t B, int64_t T, int64_t H, int64_t L,
                              int64_t R, float scale) {
    std::vector<double> p(static_cast<size_t>(T));
    for (int64_t b = 0; b < B; ++b) {
        for (int64_t i = 0; i < T; ++i) {
            for (int64_t h = 0; h < H; ++h) {
                const float* ql = q_lat + ((b * T + i) * H + h) * L;
                const float* qr = q_rope + ((b * T + i) * H + h) * R;
                double mx = -INFINITY;
                for (int64_t j = 0; j <= i; ++j) {
                    double s = 0.0;
                    for (int64_t x = 0; x < L; ++x) s += double(ql[x]) * ckv[(b * T + j) * L + x];
                    for (int64_t x = 0; x < R; ++x)
                        s += double(qr[x]) * k_rope[(b * T + j) * R + x];
                    p[j] = s * scale;
                    mx = std::max(mx, p[j]);
                }
                double sum = 0.0;
                for (int64_t j = 0; j <= i; ++j) sum += (p[j] = std::exp(p[j] - mx));
                float* o = out + ((b * T + i) * H + h) * L;
                for (int64_t x = 0; x < L; ++x) {
                    double acc = 0.0;
                    for (int64_t j = 0; j <= i; ++j) acc += p[j] * ckv[(b * T + j) * L + x];
                    o[x] = static_cast<float>(acc / sum);
                }
            }
        }
    }
}

void mla_attention_decompressed_ref(float* out, const float* q_nope, const float* q_rope,
                                    const float* ckv, const float* k_rope, const float* kv_b,
                                    int64_t B, int64_t T, int64_t H, int64_t P, int64_t R,
                                    int64_t L, int64_t V, float scale) {
    const int64_t N = B * T;
    std::vector<double> k_nope(N * H * P), val(N * H * V);  // decompressed per head
    for (int64_t n = 0; n < N; ++n) {
        for (int64_t h = 0; h < H; ++h) {
            const float* rows = kv_b + h * (P + V) * L;
            for (int64_t r = 0; r < P + V; ++r) {
                double acc = 0.0;
                for (int64_t x = 0; x < L; ++x) acc += double(rows[r * L + x]) * ckv[n * L + x];
                if (r < P)
                    k_nope[(n * H + h) * P + r] = acc;
                else
                    val[(n * H + h) * V + r - P] = acc;
            }
        }
    }
    std::vector<double> p(static_cast<size_t>(T));
    for (int64_t b = 0; b < B; ++b) {
        for (int64_t i = 0; i < T; ++i) {
            for (int64_t h = 0; h < H; ++h) {
                const int64_t qi = (b * T + i) * H + h;
                double mx = -INFINITY;
                for (int64_t j = 0; j <= i; ++j) {
                    const int64_t kj = (b * T + j) * H + h;
                    double s = 0.0;
                    for (int64_t x = 0; x < P; ++x)
                        s += double(q_nope[qi * P + x]) * k_nope[kj * P + x];
                    for (int64_t x = 0; x < R; ++x)
                        s += double(q_rope[qi * R + x]) * k_rope[(b * T + j) * R + x];
                    p[j] = s * scale;
                    mx = std::max(mx, p[j]);
                }
                double sum = 0.0;
                for (int64_t j = 0; j <= i; ++j) sum += (p[j] = std::exp(p[j] - mx));
                for (int64_t x = 0; x < V; ++x) {
                    double acc = 0.0;
                    for (int64_t j = 0; j <= i; ++j)
                        acc += p[j] * val[((b * T + j) * H + h) * V + x];
                    out[qi * V + x] = static_cast<float>(acc / sum);
                }
            }
        }
    }
}

}  // namespace quantlens
