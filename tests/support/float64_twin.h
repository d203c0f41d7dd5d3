// Test helper (header-only): a float64 forward pass of the DeepSeek-V3 and GLM-4.5 fixtures,
// written plainly from transformers' modeling code (decompressed MLA or GQA with q/k norms
// and biases, DeepSeek's grouped sigmoid routing in double), with the expert choices of every
// MoE layer. tests/analysis/test_deepseek_families.cpp checks it reproduces transformers'
// float64 logits before comparing the engine's expert choices with it.
#pragma once

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "formats/model_config.h"
#include "model/model.h"

namespace quantlens::test_support {

using Mat = std::vector<double>;

struct Twin {
    const Model& m;
    const ModelConfig& c;
    Mat w(const std::string& name) const {
        const std::vector<float> f = m.read_f32(m.get(name));
        return Mat(f.begin(), f.end());
    }
    // out[N, O] = x[N, I] · W[O, I]ᵀ (+ b)
    static Mat linear(const Mat& x, const Mat& W, int64_t N, int64_t I, int64_t O,
                      const Mat* b = nullptr) {
        Mat out(N * O);
        for (int64_t n = 0; n < N; ++n)
            for (int64_t o = 0; o < O; ++o) {
                double s = b ? (*b)[o] : 0.0;
                for (int64_t i = 0; i < I; ++i) s += x[n * I + i] * W[o * I + i];
                out[n * O + o] = s;
            }
        return out;
    }
    static void rmsnorm(Mat& x, const Mat& g, int64_t rows, int64_t C, double eps) {
        for (int64_t r = 0; r < rows; ++r) {
            double ss = 0;
            for (int64_t i = 0; i < C; ++i) ss += x[r * C + i] * x[r * C + i];
            const double k = 1.0 / std::sqrt(ss / C + eps);
            for (int64_t i = 0; i < C; ++i) x[r * C + i] *= k * g[i];
        }
    }
    // Rotates pairs (x[a(i)], x[b(i)]) of one head's R rope channels at position t.
    void rope(double* x, int64_t t, int64_t R, bool interleaved, const std::vector<double>& freqs,
              double ms) const {
        for (int64_t i = 0; i < R / 2; ++i) {
            const int64_t a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + R / 2;
            const double cs = std::cos(t * freqs[i]) * ms, sn = std::sin(t * freqs[i]) * ms;
            const double x0 = x[a], x1 = x[b];
            x[a] = x0 * cs - x1 * sn;
            x[b] = x1 * cs + x0 * sn;
        }
    }
    // Causal attention, q[T, H, D], k[T, H, D], v[T, H, Dv] → [T, H, Dv].
    static Mat attend(const Mat& q, const Mat& k, const Mat& v, int64_t T, int64_t H, int64_t D,
                      int64_t Dv, double scale) {
        Mat out(T * H * Dv), p(T);
        for (int64_t h = 0; h < H; ++h)
            for (int64_t i = 0; i < T; ++i) {
                double mx = -INFINITY, sum = 0;
                for (int64_t j = 0; j <= i; ++j) {
                    double s = 0;
                    for (int64_t d = 0; d < D; ++d)
                        s += q[(i * H + h) * D + d] * k[(j * H + h) * D + d];
                    mx = std::max(mx, p[j] = s * scale);
                }
                for (int64_t j = 0; j <= i; ++j) sum += (p[j] = std::exp(p[j] - mx));
                for (int64_t d = 0; d < Dv; ++d) {
                    double a = 0;
                    for (int64_t j = 0; j <= i; ++j) a += p[j] * v[(j * H + h) * Dv + d];
                    out[(i * H + h) * Dv + d] = a / sum;
                }
            }
        return out;
    }
    Mat attention(int64_t l, const Mat& x, int64_t T) const {
        const std::string p = "blk." + std::to_string(l) + ".";
        const int64_t C = c.hidden, H = c.n_heads, R = c.rotary_dims();
        const std::vector<double> freqs = rope_frequencies(c, T);
        const double ms = rope_attention_factor(c);
        if (c.mla) {
            const int64_t P = c.qk_nope_dim, L = c.kv_lora_rank, V = c.v_head_dim,
                          Q = c.q_lora_rank;
            Mat qa = linear(x, w(p + "attn_q_a.weight"), T, C, Q);
            rmsnorm(qa, w(p + "attn_q_a_norm.weight"), T, Q, 1e-6);
            Mat q = linear(qa, w(p + "attn_q_b.weight"), T, Q, H * (P + R));
            Mat kva = linear(x, w(p + "attn_kv_a_mqa.weight"), T, C, L + R);
            Mat ckv(T * L), k(T * H * (P + R)), v(T * H * V);
            for (int64_t t = 0; t < T; ++t)
                std::copy_n(kva.begin() + t * (L + R), L, ckv.begin() + t * L);
            rmsnorm(ckv, w(p + "attn_kv_a_norm.weight"), T, L, 1e-6);
            const Mat kb = w(p + "attn_k_b.weight"), vb = w(p + "attn_v_b.weight");
            for (int64_t t = 0; t < T; ++t) {
                rope(&kva[t * (L + R) + L], t, R, true, freqs, ms);
                for (int64_t h = 0; h < H; ++h) {
                    rope(&q[(t * H + h) * (P + R) + P], t, R, true, freqs, ms);
                    for (int64_t j = 0; j < P; ++j) {  // k_nope = k_bₕᵀ · c
                        double s = 0;
                        for (int64_t r = 0; r < L; ++r)
                            s += kb[(h * L + r) * P + j] * ckv[t * L + r];
                        k[(t * H + h) * (P + R) + j] = s;
                    }
                    for (int64_t j = 0; j < R; ++j)
                        k[(t * H + h) * (P + R) + P + j] = kva[t * (L + R) + L + j];
                    for (int64_t i = 0; i < V; ++i) {
                        double s = 0;
                        for (int64_t r = 0; r < L; ++r)
                            s += vb[(h * V + i) * L + r] * ckv[t * L + r];
                        v[(t * H + h) * V + i] = s;
                    }
                }
            }
            const double scale = yarn_score_scale(c) / std::sqrt(double(P + R));
            const Mat a = attend(q, k, v, T, H, P + R, V, scale);
            return linear(a, w(p + "attn_output.weight"), T, H * V, C);
        }
        const int64_t D = c.head_dim, KV = c.n_kv_heads, G = H / KV;
        const Mat bq = w(p + "attn_q.bias"), bk = w(p + "attn_k.bias"), bv = w(p + "attn_v.bias");
        Mat q = linear(x, w(p + "attn_q.weight"), T, C, H * D, &bq);
        Mat k = linear(x, w(p + "attn_k.weight"), T, C, KV * D, &bk);
        Mat v = linear(x, w(p + "attn_v.weight"), T, C, KV * D, &bv);
        rmsnorm(q, w(p + "attn_q_norm.weight"), T * H, D, c.rms_eps);
        rmsnorm(k, w(p + "attn_k_norm.weight"), T * KV, D, c.rms_eps);
        Mat kf(T * H * D), vf(T * H * D);  // kv heads repeated for their query heads
        for (int64_t t = 0; t < T; ++t) {
            for (int64_t h = 0; h < H; ++h) rope(&q[(t * H + h) * D], t, R, false, freqs, ms);
            for (int64_t h = 0; h < KV; ++h) rope(&k[(t * KV + h) * D], t, R, false, freqs, ms);
            for (int64_t h = 0; h < H; ++h) {
                std::copy_n(k.begin() + (t * KV + h / G) * D, D, kf.begin() + (t * H + h) * D);
                std::copy_n(v.begin() + (t * KV + h / G) * D, D, vf.begin() + (t * H + h) * D);
            }
        }
        const Mat a = attend(q, kf, vf, T, H, D, D, 1.0 / std::sqrt(double(D)));
        return linear(a, w(p + "attn_output.weight"), T, H * D, C);
    }
    static Mat swiglu_mlp(const Mat& x, const Mat& g, const Mat& u, const Mat& d, int64_t N,
                          int64_t C, int64_t F) {
        Mat a = linear(x, g, N, C, F);
        const Mat b = linear(x, u, N, C, F);
        for (int64_t i = 0; i < N * F; ++i) a[i] = a[i] / (1.0 + std::exp(-a[i])) * b[i];
        return linear(a, d, N, F, C);
    }
    // The MoE block; ids[T, K] gets the chosen experts (ascending).
    Mat moe(int64_t l, const Mat& x, int64_t T, std::vector<int32_t>& ids) const {
        const std::string p = "blk." + std::to_string(l) + ".";
        const int64_t C = c.hidden, E = c.n_experts, K = c.n_experts_used, F = c.ffn;
        const int64_t G = c.n_expert_groups, per = E / G;
        const Mat logits = linear(x, w(p + "ffn_gate_inp.weight"), T, C, E);
        const Mat bias = w(p + "exp_probs_b.bias");
        const Mat gate = w(p + "ffn_gate_exps.weight"), up = w(p + "ffn_up_exps.weight");
        const Mat down = w(p + "ffn_down_exps.weight");
        Mat out = swiglu_mlp(x, w(p + "ffn_gate_shexp.weight"), w(p + "ffn_up_shexp.weight"),
                             w(p + "ffn_down_shexp.weight"), T, C, c.shared_expert_ffn);
        ids.assign(T * K, 0);
        for (int64_t t = 0; t < T; ++t) {
            Mat s(E), choice(E), group(G, 0.0);
            for (int64_t e = 0; e < E; ++e) {
                s[e] = 1.0 / (1.0 + std::exp(-logits[t * E + e]));
                choice[e] = s[e] + bias[e];
            }
            for (int64_t g = 0; g < G; ++g) {
                Mat in(choice.begin() + g * per, choice.begin() + (g + 1) * per);
                std::sort(in.rbegin(), in.rend());
                group[g] = in[0] + (in.size() > 1 ? in[1] : 0.0);
            }
            std::vector<int64_t> order(G);
            std::iota(order.begin(), order.end(), 0);
            std::sort(order.begin(), order.end(),
                      [&](auto a, auto b) { return group[a] > group[b]; });
            Mat masked(E, 0.0);
            for (int64_t i = 0; i < c.n_expert_groups_used; ++i)
                for (int64_t e = order[i] * per; e < (order[i] + 1) * per; ++e)
                    masked[e] = choice[e];
            std::vector<int64_t> ex(E);
            std::iota(ex.begin(), ex.end(), 0);
            std::sort(ex.begin(), ex.end(), [&](auto a, auto b) { return masked[a] > masked[b]; });
            double sum = 0;
            for (int64_t i = 0; i < K; ++i) sum += s[ex[i]];
            for (int64_t i = 0; i < K; ++i) {
                const int64_t e = ex[i];
                const double wt = (c.moe_renormalize ? s[e] / sum : s[e]) * c.moe_weights_scale;
                const Mat xe(x.begin() + t * C, x.begin() + (t + 1) * C);
                const Mat y = swiglu_mlp(
                    xe, Mat(gate.begin() + e * F * C, gate.begin() + (e + 1) * F * C),
                    Mat(up.begin() + e * F * C, up.begin() + (e + 1) * F * C),
                    Mat(down.begin() + e * C * F, down.begin() + (e + 1) * C * F), 1, C, F);
                for (int64_t j = 0; j < C; ++j) out[t * C + j] += wt * y[j];
                ids[t * K + i] = static_cast<int32_t>(e);
            }
            std::sort(ids.begin() + t * K, ids.begin() + (t + 1) * K);
        }
        return out;
    }
    // logits[T, V]; routing[l] = ids[T, K] of each MoE layer.
    Mat forward(std::span<const int32_t> tokens,
                std::map<int64_t, std::vector<int32_t>>& routing) const {
        const int64_t T = static_cast<int64_t>(tokens.size()), C = c.hidden;
        const Mat emb = w("token_embd.weight");
        Mat h(T * C);
        for (int64_t t = 0; t < T; ++t)
            std::copy_n(emb.begin() + tokens[t] * C, C, h.begin() + t * C);
        for (int64_t l = 0; l < c.n_layers; ++l) {
            const std::string p = "blk." + std::to_string(l) + ".";
            Mat x = h;
            rmsnorm(x, w(p + "attn_norm.weight"), T, C, c.rms_eps);
            const Mat a = attention(l, x, T);
            for (int64_t i = 0; i < T * C; ++i) h[i] += a[i];
            x = h;
            rmsnorm(
                x,
                w(p + (c.ffn_norm_post_attention ? "post_attention_norm" : "ffn_norm") + ".weight"),
                T, C, c.rms_eps);
            const Mat f = c.is_moe_layer(l)
                              ? moe(l, x, T, routing[l])
                              : swiglu_mlp(x, w(p + "ffn_gate.weight"), w(p + "ffn_up.weight"),
                                           w(p + "ffn_down.weight"), T, C, c.dense_ffn_width());
            for (int64_t i = 0; i < T * C; ++i) h[i] += f[i];
        }
        rmsnorm(h, w("output_norm.weight"), T, C, c.rms_eps);
        return linear(h, w("output.weight"), T, C, c.vocab);
    }
};

}  // namespace quantlens::test_support
