// The scalar reference twin of Gemma 4's forward pass (gemma4_layer.h): plain double loops
// over the weights as Model::read_f32 gives them, one sequence, no BLAS, no state rows, no
// thread pool. Written from the equations in model/families/gemma4.cpp, not from the engine.
#include <algorithm>
#include <cmath>
#include <numbers>
#include <numeric>

#include "core/error.h"
#include "engine/layers/gemma4_layer.h"
#include "model/model.h"

namespace quantlens {

namespace {

using Vec = std::vector<double>;

struct RefWeights {
    const Model& m;
    Vec get(const std::string& name) const {
        const std::vector<float> f = m.read_f32(m.get(name));
        return Vec(f.begin(), f.end());
    }
    bool has(const std::string& name) const { return m.find(name) != nullptr; }
};

// y[OUT] = W[OUT, IN] · x[IN] (W in ggml order: row o holds IN values), of matrix `e` of a
// stacked tensor.
Vec matvec(const Vec& w, const double* x, int64_t in, int64_t out, int64_t e = 0) {
    Vec y(static_cast<size_t>(out), 0.0);
    const double* base = w.data() + e * in * out;
    for (int64_t o = 0; o < out; ++o) {
        double acc = 0;
        for (int64_t i = 0; i < in; ++i) acc += base[o * in + i] * x[i];
        y[static_cast<size_t>(o)] = acc;
    }
    return y;
}

// RMSNorm of x[n] in place; weight null = none.
void rmsnorm(double* x, int64_t n, const double* w, double eps) {
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += x[i] * x[i];
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(n) + eps);
    for (int64_t i = 0; i < n; ++i) x[i] = x[i] * inv * (w ? w[i] : 1.0);
}

double gelu_tanh(double x) {
    return 0.5 * x *
           (1.0 + std::tanh(std::sqrt(2.0 / std::numbers::pi) * (x + 0.044715 * x * x * x)));
}

// Half-split rope of one head of D channels at position p.
void rope(double* x, int64_t D, const std::vector<double>& freqs, int64_t p) {
    const int64_t half = D / 2;
    for (int64_t i = 0; i < half; ++i) {
        const double a = static_cast<double>(p) * freqs[static_cast<size_t>(i)];
        const double x0 = x[i], x1 = x[i + half];
        x[i] = x0 * std::cos(a) - x1 * std::sin(a);
        x[i + half] = x1 * std::cos(a) + x0 * std::sin(a);
    }
}

}  // namespace

std::vector<double> gemma4_forward_ref(const Model& model, std::span<const int32_t> tokens) {
    const ModelConfig& c = model.config();
    QL_CHECK(c.is_gemma4(), "{}: not a Gemma 4 model", model.path());
    const RefWeights w{model};
    const int64_t T = static_cast<int64_t>(tokens.size()), C = c.hidden, L = c.n_layers;
    const int64_t P = c.ple_dim, H = c.n_heads, V = c.vocab;
    const double eps = c.rms_eps;

    // Embeddings × √C and the per-layer inputs [T][L·P].
    const Vec emb = w.get("token_embd.weight");
    std::vector<Vec> h(static_cast<size_t>(T), Vec(static_cast<size_t>(C)));
    for (int64_t t = 0; t < T; ++t)
        for (int64_t i = 0; i < C; ++i)
            h[static_cast<size_t>(t)][static_cast<size_t>(i)] =
                emb[static_cast<size_t>(tokens[t] * C + i)] * std::sqrt(static_cast<double>(C));
    std::vector<Vec> ple(static_cast<size_t>(T));
    if (P > 0) {
        const Vec table = w.get("per_layer_token_embd.weight"),
                  proj = w.get("per_layer_model_proj.weight"),
                  norm = w.get("per_layer_proj_norm.weight");
        for (int64_t t = 0; t < T; ++t) {
            Vec x = matvec(proj, h[static_cast<size_t>(t)].data(), C, L * P);
            for (int64_t l = 0; l < L; ++l) {
                double* xl = x.data() + l * P;
                for (int64_t p = 0; p < P; ++p) xl[p] /= std::sqrt(static_cast<double>(C));
                rmsnorm(xl, P, norm.data(), eps);
                for (int64_t p = 0; p < P; ++p)
                    xl[p] = (xl[p] + table[static_cast<size_t>(tokens[t] * L * P + l * P + p)] *
                                         std::sqrt(static_cast<double>(P))) /
                            std::sqrt(2.0);
            }
            ple[static_cast<size_t>(t)] = std::move(x);
        }
    }

    std::vector<std::vector<Vec>> keys(static_cast<size_t>(L)), values(static_cast<size_t>(L));
    int64_t d_swa = c.head_dim, d_global = c.head_dim;
    for (int64_t l = 0; l < L; ++l)
        (c.is_sliding(l) ? d_swa : d_global) = c.gemma4_layers[static_cast<size_t>(l)].head_dim;
    const auto f_swa = default_rope_frequencies(c.rope_theta_swa, d_swa);
    const auto f_global =
        proportional_rope_frequencies(c.rope_theta, d_global, c.rope_partial_global);
    for (int64_t l = 0; l < L; ++l) {
        const ModelConfig::Gemma4Layer& s = c.gemma4_layers[static_cast<size_t>(l)];
        const std::string p = "blk." + std::to_string(l) + ".";
        const int64_t D = s.head_dim, KV = s.n_kv_heads;
        const bool sliding = c.is_sliding(l);
        const auto& freqs = sliding ? f_swa : f_global;
        const Vec an = w.get(p + "attn_norm.weight"), wq = w.get(p + "attn_q.weight"),
                  qn = w.get(p + "attn_q_norm.weight"), wo = w.get(p + "attn_output.weight"),
                  pan = w.get(p + "post_attention_norm.weight");
        std::vector<Vec> q(static_cast<size_t>(T));
        if (s.kv_source == l) {
            const Vec wk = w.get(p + "attn_k.weight"), kn = w.get(p + "attn_k_norm.weight");
            const Vec wv = s.v_is_k ? wk : w.get(p + "attn_v.weight");
            keys[static_cast<size_t>(l)].resize(static_cast<size_t>(T));
            values[static_cast<size_t>(l)].resize(static_cast<size_t>(T));
            for (int64_t t = 0; t < T; ++t) {
                Vec x = h[static_cast<size_t>(t)];
                rmsnorm(x.data(), C, an.data(), eps);
                Vec k = matvec(wk, x.data(), C, KV * D), v = matvec(wv, x.data(), C, KV * D);
                for (int64_t g = 0; g < KV; ++g) {
                    rmsnorm(k.data() + g * D, D, kn.data(), eps);
                    rope(k.data() + g * D, D, freqs, t);
                    rmsnorm(v.data() + g * D, D, nullptr, eps);
                }
                keys[static_cast<size_t>(l)][static_cast<size_t>(t)] = std::move(k);
                values[static_cast<size_t>(l)][static_cast<size_t>(t)] = std::move(v);
            }
        }
        const auto& K = keys[static_cast<size_t>(s.kv_source)];
        const auto& Vv = values[static_cast<size_t>(s.kv_source)];
        for (int64_t t = 0; t < T; ++t) {
            Vec x = h[static_cast<size_t>(t)];
            rmsnorm(x.data(), C, an.data(), eps);
            Vec qt = matvec(wq, x.data(), C, H * D);
            Vec att(static_cast<size_t>(H * D), 0.0);
            for (int64_t hh = 0; hh < H; ++hh) {
                double* qh = qt.data() + hh * D;
                rmsnorm(qh, D, qn.data(), eps);
                rope(qh, D, freqs, t);
                const int64_t g = hh / (H / KV);
                const int64_t j0 = sliding ? std::max<int64_t>(0, t - c.sliding_window + 1) : 0;
                Vec sc;
                for (int64_t j = j0; j <= t; ++j) {
                    double d = 0;
                    for (int64_t i = 0; i < D; ++i)
                        d += qh[i] * K[static_cast<size_t>(j)][static_cast<size_t>(g * D + i)];
                    sc.push_back(d * c.attn_scale);
                }
                const double mx = *std::max_element(sc.begin(), sc.end());
                double sum = 0;
                for (double& e : sc) sum += (e = std::exp(e - mx));
                for (int64_t j = j0; j <= t; ++j)
                    for (int64_t i = 0; i < D; ++i)
                        att[static_cast<size_t>(hh * D + i)] +=
                            sc[static_cast<size_t>(j - j0)] / sum *
                            Vv[static_cast<size_t>(j)][static_cast<size_t>(g * D + i)];
            }
            Vec o = matvec(wo, att.data(), H * D, C);
            rmsnorm(o.data(), C, pan.data(), eps);
            for (int64_t i = 0; i < C; ++i)
                h[static_cast<size_t>(t)][static_cast<size_t>(i)] += o[static_cast<size_t>(i)];
        }

        const Vec fn = w.get(p + "ffn_norm.weight"), wg = w.get(p + "ffn_gate.weight"),
                  wu = w.get(p + "ffn_up.weight"), wd = w.get(p + "ffn_down.weight"),
                  pfn = w.get(p + "post_ffw_norm.weight");
        const int64_t F = s.ffn;
        const bool moe = c.is_moe();
        auto opt = [&](const std::string& n, bool want) { return want ? w.get(p + n) : Vec(); };
        const Vec pn1 = opt("post_ffw_norm_1.weight", moe),
                  pn2 = opt("post_ffw_norm_2.weight", moe),
                  pre2 = opt("pre_ffw_norm_2.weight", moe), rs = opt("ffn_gate_inp.scale", moe),
                  router = opt("ffn_gate_inp.weight", moe),
                  gu = opt("ffn_gate_up_exps.weight", moe), dn = opt("ffn_down_exps.weight", moe),
                  es = opt("ffn_down_exps.scale", moe), ig = opt("inp_gate.weight", P > 0),
                  pj = opt("proj.weight", P > 0), pon = opt("post_norm.weight", P > 0);
        const bool scaled = w.has(p + "layer_output_scale.weight");
        const double out_scale = scaled ? w.get(p + "layer_output_scale.weight")[0] : 1.0;
        for (int64_t t = 0; t < T; ++t) {
            Vec& ht = h[static_cast<size_t>(t)];
            Vec x = ht;
            rmsnorm(x.data(), C, fn.data(), eps);
            Vec g = matvec(wg, x.data(), C, F), u = matvec(wu, x.data(), C, F);
            for (int64_t i = 0; i < F; ++i)
                g[static_cast<size_t>(i)] =
                    gelu_tanh(g[static_cast<size_t>(i)]) * u[static_cast<size_t>(i)];
            Vec y = matvec(wd, g.data(), F, C);
            if (moe) {
                rmsnorm(y.data(), C, pn1.data(), eps);
                const int64_t E = c.n_experts, FE = c.expert_ffn;
                Vec r = ht;
                rmsnorm(r.data(), C, nullptr, eps);
                for (int64_t i = 0; i < C; ++i)
                    r[static_cast<size_t>(i)] *=
                        rs[static_cast<size_t>(i)] / std::sqrt(static_cast<double>(C));
                const Vec logits = matvec(router, r.data(), C, E);
                std::vector<int64_t> order(static_cast<size_t>(E));
                std::iota(order.begin(), order.end(), 0);
                std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
                    return logits[static_cast<size_t>(a)] > logits[static_cast<size_t>(b)];
                });
                double kept = 0;
                for (int64_t k = 0; k < c.n_experts_used; ++k)
                    kept += std::exp(logits[static_cast<size_t>(order[static_cast<size_t>(k)])]);
                Vec xe = ht;
                rmsnorm(xe.data(), C, pre2.data(), eps);
                Vec mix(static_cast<size_t>(C), 0.0);
                for (int64_t k = 0; k < c.n_experts_used; ++k) {
                    const int64_t e = order[static_cast<size_t>(k)];
                    const double weight = std::exp(logits[static_cast<size_t>(e)]) / kept *
                                          es[static_cast<size_t>(e)];
                    Vec both = matvec(gu, xe.data(), C, 2 * FE, e);
                    Vec act(static_cast<size_t>(FE));
                    for (int64_t i = 0; i < FE; ++i)
                        act[static_cast<size_t>(i)] = gelu_tanh(both[static_cast<size_t>(i)]) *
                                                      both[static_cast<size_t>(FE + i)];
                    const Vec out = matvec(dn, act.data(), FE, C, e);
                    for (int64_t i = 0; i < C; ++i)
                        mix[static_cast<size_t>(i)] += weight * out[static_cast<size_t>(i)];
                }
                rmsnorm(mix.data(), C, pn2.data(), eps);
                for (int64_t i = 0; i < C; ++i)
                    y[static_cast<size_t>(i)] += mix[static_cast<size_t>(i)];
            }
            rmsnorm(y.data(), C, pfn.data(), eps);
            for (int64_t i = 0; i < C; ++i) ht[static_cast<size_t>(i)] += y[static_cast<size_t>(i)];
            if (P > 0) {
                Vec gate = matvec(ig, ht.data(), C, P);
                for (int64_t i = 0; i < P; ++i)
                    gate[static_cast<size_t>(i)] =
                        gelu_tanh(gate[static_cast<size_t>(i)]) *
                        ple[static_cast<size_t>(t)][static_cast<size_t>(l * P + i)];
                Vec pr = matvec(pj, gate.data(), P, C);
                rmsnorm(pr.data(), C, pon.data(), eps);
                for (int64_t i = 0; i < C; ++i)
                    ht[static_cast<size_t>(i)] += pr[static_cast<size_t>(i)];
            }
            for (double& v : ht) v *= out_scale;
        }
    }

    const Vec on = w.get("output_norm.weight");
    const Vec out = w.has("output.weight") ? w.get("output.weight") : emb;
    std::vector<double> logits(static_cast<size_t>(T * V));
    for (int64_t t = 0; t < T; ++t) {
        Vec x = h[static_cast<size_t>(t)];
        rmsnorm(x.data(), C, on.data(), eps);
        const Vec z = matvec(out, x.data(), C, V);
        for (int64_t v = 0; v < V; ++v) {
            double zv = z[static_cast<size_t>(v)];
            if (c.final_softcap > 0) zv = c.final_softcap * std::tanh(zv / c.final_softcap);
            logits[static_cast<size_t>(t * V + v)] = zv;
        }
    }
    return logits;
}

}  // namespace quantlens
