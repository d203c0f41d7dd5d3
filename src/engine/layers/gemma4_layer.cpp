// Gemma 4's decoder layer on the CPU engine: see gemma4_layer.h for the row layout and
// model/families/gemma4.cpp for the equations.
#include "engine/layers/gemma4_layer.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "engine/kernels.h"
#include "model/model.h"
#include "model/names.h"
#include "quant/quant.h"

namespace quantlens {

std::vector<double> proportional_rope_frequencies(double theta, int64_t D, double partial) {
    const auto rotated = static_cast<int64_t>(std::floor(partial * static_cast<double>(D) / 2.0));
    std::vector<double> f(static_cast<size_t>(D / 2), 0.0);
    for (int64_t i = 0; i < rotated && i < D / 2; ++i)
        f[static_cast<size_t>(i)] =
            std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(D));
    return f;
}

std::vector<double> default_rope_frequencies(double theta, int64_t D) {
    return proportional_rope_frequencies(theta, D, 1.0);
}

namespace {

// out[N, L·P]: for each token and layer, RMSNorm over P of proj·C^-½, plus tok·√P, × 2^-½.
void ple_combine(float* out, const float* projected, const float* tok, const float* norm, int64_t N,
                 int64_t L, int64_t P, float eps) {
    const float tok_scale = std::sqrt(static_cast<float>(P));
    const float mix = 1.0f / std::sqrt(2.0f);
    std::vector<float> row(static_cast<size_t>(P));
    for (int64_t n = 0; n < N * L; ++n) {
        rmsnorm_forward(row.data(), projected + n * P, norm, 1, P, eps);
        for (int64_t p = 0; p < P; ++p)
            out[n * P + p] = (row[static_cast<size_t>(p)] + tok[n * P + p] * tok_scale) * mix;
    }
}

}  // namespace

void ple_inputs_forward(float* out, const float* emb, const float* tok, const float* proj,
                        const float* norm, int64_t N, int64_t C, int64_t L, int64_t P, float eps) {
    std::vector<float> projected(static_cast<size_t>(N * L * P));  // [N, L·P]
    matmul_forward(projected.data(), emb, proj, nullptr, N, C, L * P);
    const float scale = 1.0f / std::sqrt(static_cast<float>(C));
    for (float& x : projected) x *= scale;
    ple_combine(out, projected.data(), tok, norm, N, L, P, eps);
}

void ple_inputs_ref(float* out, const float* emb, const float* tok, const float* proj,
                    const float* norm, int64_t N, int64_t C, int64_t L, int64_t P, float eps) {
    for (int64_t n = 0; n < N; ++n)
        for (int64_t l = 0; l < L; ++l) {
            std::vector<double> x(static_cast<size_t>(P));
            double ss = 0;
            for (int64_t p = 0; p < P; ++p) {
                double acc = 0;
                const float* w = proj + (l * P + p) * C;
                for (int64_t c = 0; c < C; ++c) acc += static_cast<double>(emb[n * C + c]) * w[c];
                x[static_cast<size_t>(p)] = acc / std::sqrt(static_cast<double>(C));
                ss += x[static_cast<size_t>(p)] * x[static_cast<size_t>(p)];
            }
            const double inv = 1.0 / std::sqrt(ss / static_cast<double>(P) + eps);
            for (int64_t p = 0; p < P; ++p) {
                const int64_t i = (n * L + l) * P + p;
                const double t = static_cast<double>(tok[i]) * std::sqrt(static_cast<double>(P));
                out[i] = static_cast<float>((x[static_cast<size_t>(p)] * inv * norm[p] + t) /
                                            std::sqrt(2.0));
            }
        }
}

std::vector<std::pair<int64_t, float>> gemma4_route(const float* logits, const float* scale,
                                                    int64_t E, int64_t K) {
    const float mx = *std::max_element(logits, logits + E);
    std::vector<double> p(static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e)
        p[static_cast<size_t>(e)] = std::exp(static_cast<double>(logits[e] - mx));
    std::vector<int64_t> order(static_cast<size_t>(E));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
        return p[static_cast<size_t>(a)] > p[static_cast<size_t>(b)];
    });
    double kept = 0;  // the softmax denominator cancels in the renormalization
    for (int64_t i = 0; i < K; ++i) kept += p[static_cast<size_t>(order[static_cast<size_t>(i)])];
    std::vector<std::pair<int64_t, float>> out;
    for (int64_t i = 0; i < K; ++i) {
        const int64_t e = order[static_cast<size_t>(i)];
        out.emplace_back(e, static_cast<float>(p[static_cast<size_t>(e)] / kept * scale[e]));
    }
    return out;
}

void Engine::gemma4_init() {
    const ModelConfig& c = config_;
    gemma4_ = std::make_unique<Gemma4State>();
    Gemma4State& g = *gemma4_;
    g.names.resize(static_cast<size_t>(c.n_layers));
    for (int64_t l = 0; l < c.n_layers; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        Gemma4State::Names& n = g.names[static_cast<size_t>(l)];
        n.attn_norm = p + "attn_norm.weight";
        n.q = p + "attn_q.weight";
        n.k = p + "attn_k.weight";
        n.v = p + "attn_v.weight";
        n.o = p + "attn_output.weight";
        n.q_norm = p + "attn_q_norm.weight";
        n.k_norm = p + "attn_k_norm.weight";
        n.post_attn_norm = p + "post_attention_norm.weight";
        n.ffn_norm = p + "ffn_norm.weight";
        n.gate = p + "ffn_gate.weight";
        n.up = p + "ffn_up.weight";
        n.down = p + "ffn_down.weight";
        n.post_ffw_norm = p + "post_ffw_norm.weight";
        n.router = p + "ffn_gate_inp.weight";
        n.router_scale = p + "ffn_gate_inp.scale";
        n.gate_up_exps = p + "ffn_gate_up_exps.weight";
        n.down_exps = p + "ffn_down_exps.weight";
        n.expert_scale = p + "ffn_down_exps.scale";
        n.pre_norm_2 = p + "pre_ffw_norm_2.weight";
        n.post_norm_1 = p + "post_ffw_norm_1.weight";
        n.post_norm_2 = p + "post_ffw_norm_2.weight";
        n.inp_gate = p + "inp_gate.weight";
        n.proj = p + "proj.weight";
        n.post_norm = p + "post_norm.weight";
        n.out_scale = p + "layer_output_scale.weight";
    }
    g.rows = gemma4_row_layout(c);
    width_ = g.rows.width;
    int64_t max_d = 0;
    for (const ModelConfig::Gemma4Layer& s : c.gemma4_layers) max_d = std::max(max_d, s.head_dim);
    g.ones.assign(static_cast<size_t>(std::max(max_d, c.hidden)), 1.0f);
    g.freqs_swa = gemma4_rope_frequencies(c, true);
    g.freqs_global = gemma4_rope_frequencies(c, false);
}

Gemma4RowLayout gemma4_row_layout(const ModelConfig& c) {
    Gemma4RowLayout r;
    r.ple_offset = c.hidden;
    r.width = c.hidden + c.n_layers * c.ple_dim;
    r.kv_offset.assign(static_cast<size_t>(c.n_layers), -1);
    for (int64_t l = 0; l < c.n_layers; ++l) {
        const ModelConfig::Gemma4Layer& s = c.gemma4_layers[static_cast<size_t>(l)];
        if (s.kv_source == l) continue;
        int64_t& off = r.kv_offset[static_cast<size_t>(s.kv_source)];
        if (off >= 0) continue;
        const ModelConfig::Gemma4Layer& src = c.gemma4_layers[static_cast<size_t>(s.kv_source)];
        off = r.width;
        r.width += 2 * src.n_kv_heads * src.head_dim;
    }
    return r;
}

std::vector<double> gemma4_rope_frequencies(const ModelConfig& c, bool sliding) {
    int64_t d = c.head_dim;
    for (int64_t l = 0; l < c.n_layers; ++l)
        if (c.is_sliding(l) == sliding) d = c.gemma4_layers[static_cast<size_t>(l)].head_dim;
    return sliding ? default_rope_frequencies(c.rope_theta_swa, d)
                   : proportional_rope_frequencies(c.rope_theta, d, c.rope_partial_global);
}

void Engine::gemma4_check_shapes() const {
    const ModelConfig& c = config_;
    const int64_t C = c.hidden, P = c.ple_dim, L = c.n_layers;
    auto expect = [&](const std::string& name, const std::vector<int64_t>& ne, bool required) {
        expect_shape(name, ne, required, "the Gemma 4 config");
    };
    expect("token_embd.weight", {C, c.vocab}, true);
    expect("output_norm.weight", {C}, true);
    expect("output.weight", {C, c.vocab}, false);
    if (P > 0) {
        const TensorInfo* tok = model_.find("per_layer_token_embd.weight");
        QL_CHECK(tok && tok->ne.size() == 2 && tok->ne[0] == L * P,
                 "{}: per_layer_token_embd.weight is missing or not [{}, vocab]", model_.path(),
                 L * P);
        expect("per_layer_model_proj.weight", {C, L * P}, true);
        expect("per_layer_proj_norm.weight", {P}, true);
    }
    for (int64_t l = 0; l < L; ++l) {
        const Gemma4State::Names& n = gemma4_->names[static_cast<size_t>(l)];
        const ModelConfig::Gemma4Layer& s = c.gemma4_layers[static_cast<size_t>(l)];
        const int64_t D = s.head_dim, HD = c.n_heads * D, KD = s.n_kv_heads * D;
        const bool own_kv = s.kv_source == l;
        expect(n.attn_norm, {C}, true);
        expect(n.q, {C, HD}, true);
        expect(n.k, {C, KD}, own_kv);
        expect(n.v, {C, KD}, own_kv && !s.v_is_k);
        QL_CHECK(!s.v_is_k || model_.find(n.v) == nullptr,
                 "{}: layer {} has {} although attention_k_eq_v makes V the K projection",
                 model_.path(), l, n.v);
        expect(n.o, {HD, C}, true);
        expect(n.q_norm, {D}, true);
        expect(n.k_norm, {D}, own_kv);
        expect(n.post_attn_norm, {C}, true);
        expect(n.ffn_norm, {C}, true);
        expect(n.gate, {C, s.ffn}, true);
        expect(n.up, {C, s.ffn}, true);
        expect(n.down, {s.ffn, C}, true);
        expect(n.post_ffw_norm, {C}, true);
        expect(n.out_scale, {1}, false);
        if (c.is_moe()) {
            const int64_t E = c.n_experts, F = c.expert_ffn;
            expect(n.router, {C, E}, true);
            expect(n.router_scale, {C}, true);
            expect(n.gate_up_exps, {C, 2 * F, E}, true);
            expect(n.down_exps, {F, C, E}, true);
            expect(n.expert_scale, {E}, true);
            expect(n.pre_norm_2, {C}, true);
            expect(n.post_norm_1, {C}, true);
            expect(n.post_norm_2, {C}, true);
        }
        if (P > 0) {
            expect(n.inp_gate, {C, P}, true);
            expect(n.proj, {P, C}, true);
            expect(n.post_norm, {C}, true);
        }
    }
}

// Row `row` of a [rows, cols] table (a lookup), dequantized into `tmp` when it is read in
// place as quantized blocks.
const float* Engine::gemma4_row(const std::string& name, int64_t row,
                                std::vector<float>& tmp) const {
    const TensorInfo& t = model_.get(name);
    if (const QuantizedWeight* q = quantized(name)) {
        tmp.resize(static_cast<size_t>(t.n_per_row()));
        dequantize(q->type, q->data + row * q->row_bytes, tmp.data(), 1, t.n_per_row());
        return tmp.data();
    }
    return weight(name) + row * t.n_per_row();
}

std::vector<float> Engine::gemma4_widen(std::span<const int32_t> tokens,
                                        std::vector<float> h) const {
    const ModelConfig& c = config_;
    const int64_t C = c.hidden, W = width_, N = static_cast<int64_t>(tokens.size());
    const int64_t L = c.n_layers, P = c.ple_dim;
    std::vector<float> out(static_cast<size_t>(N * W), 0.0f);  // [N, W]
    for (int64_t n = 0; n < N; ++n) std::copy_n(h.data() + n * C, C, out.data() + n * W);
    if (P == 0) return out;
    const TensorInfo& table = model_.get("per_layer_token_embd.weight");
    std::vector<float> tok(static_cast<size_t>(N * L * P)), tmp;  // [N, L·P]
    for (int64_t n = 0; n < N; ++n) {
        QL_CHECK(tokens[n] < table.ne[1],
                 "{}: token id {} at position {} is outside per_layer_token_embd's {} rows",
                 model_.path(), tokens[n], n, table.ne[1]);
        std::copy_n(gemma4_row(table.name, tokens[n], tmp), L * P, tok.data() + n * L * P);
    }
    static const std::string proj_name = "per_layer_model_proj.weight";
    emit(HookEvent::Kind::LinearInput, -1, &proj_name, -1, h.data(), N, C);
    std::vector<float> projected(static_cast<size_t>(N * L * P));  // [N, L·P]
    linear(projected.data(), proj_name, h.data(), nullptr, N, C, L * P);
    const float scale = 1.0f / std::sqrt(static_cast<float>(C));
    for (float& x : projected) x *= scale;
    std::vector<float> ple(static_cast<size_t>(N * L * P));
    ple_combine(ple.data(), projected.data(), tok.data(), weight("per_layer_proj_norm.weight"), N,
                L, P, static_cast<float>(c.rms_eps));
    for (int64_t n = 0; n < N; ++n)
        std::copy_n(ple.data() + n * L * P, L * P, out.data() + n * W + gemma4_->rows.ple_offset);
    return out;
}

void Engine::gemma4_ffn(int64_t l, const float* h, float* out, int64_t N) const {
    const ModelConfig& c = config_;
    const Gemma4State::Names& n = gemma4_->names[static_cast<size_t>(l)];
    const int64_t C = c.hidden, F = c.gemma4_layers[static_cast<size_t>(l)].ffn;
    const auto eps = static_cast<float>(c.rms_eps);
    std::vector<float> xn(N * C), gate(N * F), up(N * F);  // [N, C], [N, F]
    rmsnorm_forward(xn.data(), h, weight(n.ffn_norm), N, C, eps);
    if (hook_) {
        emit(HookEvent::Kind::LinearInput, static_cast<int>(l), &n.gate, -1, xn.data(), N, C);
        emit(HookEvent::Kind::LinearInput, static_cast<int>(l), &n.up, -1, xn.data(), N, C);
    }
    linear(gate.data(), n.gate, xn.data(), nullptr, N, C, F);
    linear(up.data(), n.up, xn.data(), nullptr, N, C, F);
    geglu_tanh_forward(gate.data(), gate.data(), up.data(), N * F);
    emit(HookEvent::Kind::LinearInput, static_cast<int>(l), &n.down, -1, gate.data(), N, F);
    linear(out, n.down, gate.data(), nullptr, N, F, C);
    if (!c.is_moe()) return;

    // The MoE block beside the MLP: each branch post-normed, then summed.
    rmsnorm_forward(out, out, weight(n.post_norm_1), N, C, eps);
    const int64_t E = c.n_experts, K = c.n_experts_used, FE = c.expert_ffn;
    std::vector<float> r(N * C), logits(N * E);  // router input [N, C], logits [N, E]
    rmsnorm_forward(r.data(), h, gemma4_->ones.data(), N, C, eps);
    const float* rs = weight(n.router_scale);
    const float root = 1.0f / std::sqrt(static_cast<float>(C));
    for (int64_t i = 0; i < N; ++i)
        for (int64_t ch = 0; ch < C; ++ch) r[i * C + ch] *= rs[ch] * root;
    emit(HookEvent::Kind::LinearInput, static_cast<int>(l), &n.router, -1, r.data(), N, C);
    linear(logits.data(), n.router, r.data(), nullptr, N, C, E);
    std::vector<std::vector<std::pair<int64_t, float>>> routed(static_cast<size_t>(E));
    const float* expert_scale = weight(n.expert_scale);
    for (int64_t i = 0; i < N; ++i)
        for (const auto& [e, w] : gemma4_route(logits.data() + i * E, expert_scale, E, K))
            routed[static_cast<size_t>(e)].emplace_back(i, w);
    rmsnorm_forward(xn.data(), h, weight(n.pre_norm_2), N, C, eps);
    std::vector<float> moe(N * C, 0.0f);  // [N, C]
    for (int64_t e = 0; e < E; ++e) {
        const auto& rows = routed[static_cast<size_t>(e)];
        const auto M = static_cast<int64_t>(rows.size());
        if (M == 0) continue;
        std::vector<float> x(M * C), both(M * 2 * FE), g(M * FE), u(M * FE), y(M * C);
        for (int64_t i = 0; i < M; ++i)
            std::copy_n(xn.data() + rows[static_cast<size_t>(i)].first * C, C, x.data() + i * C);
        emit(HookEvent::Kind::LinearInput, static_cast<int>(l), &n.gate_up_exps,
             static_cast<int>(e), x.data(), M, C);
        linear(both.data(), n.gate_up_exps, x.data(), nullptr, M, C, 2 * FE, e);
        for (int64_t i = 0; i < M; ++i) {  // gate rows first, then up rows
            std::copy_n(both.data() + i * 2 * FE, FE, g.data() + i * FE);
            std::copy_n(both.data() + i * 2 * FE + FE, FE, u.data() + i * FE);
        }
        geglu_tanh_forward(g.data(), g.data(), u.data(), M * FE);
        emit(HookEvent::Kind::LinearInput, static_cast<int>(l), &n.down_exps, static_cast<int>(e),
             g.data(), M, FE);
        linear(y.data(), n.down_exps, g.data(), nullptr, M, FE, C, e);
        for (int64_t i = 0; i < M; ++i) {
            float* o = moe.data() + rows[static_cast<size_t>(i)].first * C;
            const float w = rows[static_cast<size_t>(i)].second;
            for (int64_t ch = 0; ch < C; ++ch) o[ch] += w * y[i * C + ch];
        }
    }
    rmsnorm_forward(moe.data(), moe.data(), weight(n.post_norm_2), N, C, eps);
    residual_forward(out, moe.data(), N * C);
}

void Engine::gemma4_run_layer(int64_t l, float* state, int64_t B, int64_t T) const {
    const ModelConfig& c = config_;
    const Gemma4State& g = *gemma4_;
    const Gemma4State::Names& n = g.names[static_cast<size_t>(l)];
    const ModelConfig::Gemma4Layer& s = c.gemma4_layers[static_cast<size_t>(l)];
    const int64_t N = B * T, C = c.hidden, W = width_, H = c.n_heads, KV = s.n_kv_heads;
    const int64_t D = s.head_dim, HD = H * D, KD = KV * D;
    const auto eps = static_cast<float>(c.rms_eps);
    const bool sliding = c.is_sliding(l);
    const std::vector<double>& freqs = sliding ? g.freqs_swa : g.freqs_global;

    std::vector<float> h(N * C);  // [N, C] the hidden part of the rows
    for (int64_t i = 0; i < N; ++i) std::copy_n(state + i * W, C, h.data() + i * C);

    // Attention.
    std::vector<float> xn(N * C), q(N * HD), k(N * KD), v(N * KD);
    rmsnorm_forward(xn.data(), h.data(), weight(n.attn_norm), N, C, eps);
    emit(HookEvent::Kind::LinearInput, static_cast<int>(l), &n.q, -1, xn.data(), N, C);
    linear(q.data(), n.q, xn.data(), nullptr, N, C, HD);
    rmsnorm_forward(q.data(), q.data(), weight(n.q_norm), N * H, D, eps);
    rope_forward(q.data(), B, T, H, D, freqs, true, options_.rope_bf16_freqs);
    if (s.kv_source == l) {
        emit(HookEvent::Kind::LinearInput, static_cast<int>(l), &n.k, -1, xn.data(), N, C);
        linear(k.data(), n.k, xn.data(), nullptr, N, C, KD);
        if (s.v_is_k) {
            v = k;  // attention_k_eq_v: V is the raw K projection, v-normed below
        } else {
            emit(HookEvent::Kind::LinearInput, static_cast<int>(l), &n.v, -1, xn.data(), N, C);
            linear(v.data(), n.v, xn.data(), nullptr, N, C, KD);
        }
        rmsnorm_forward(k.data(), k.data(), weight(n.k_norm), N * KV, D, eps);
        rope_forward(k.data(), B, T, KV, D, freqs, true, options_.rope_bf16_freqs);
        rmsnorm_forward(v.data(), v.data(), g.ones.data(), N * KV, D, eps);
        if (options_.ggml_numerics) {  // F16 KV cache
            round_activations(k.data(), N, KD, ActRounding::F16);
            round_activations(v.data(), N, KD, ActRounding::F16);
        }
        if (const int64_t off = g.rows.kv_offset[static_cast<size_t>(l)]; off >= 0)
            for (int64_t i = 0; i < N; ++i) {
                std::copy_n(k.data() + i * KD, KD, state + i * W + off);
                std::copy_n(v.data() + i * KD, KD, state + i * W + off + KD);
            }
    } else {  // a KV-shared layer attends to its source layer's stored K/V
        const int64_t off = g.rows.kv_offset[static_cast<size_t>(s.kv_source)];
        QL_ASSERT(off >= 0);
        for (int64_t i = 0; i < N; ++i) {
            std::copy_n(state + i * W + off, KD, k.data() + i * KD);
            std::copy_n(state + i * W + off + KD, KD, v.data() + i * KD);
        }
    }
    if (options_.ggml_numerics) round_activations(q.data(), N, HD, ActRounding::F16);
    AttentionParams params;
    params.scale = static_cast<float>(c.attn_scale);
    params.window = sliding ? c.sliding_window : 0;
    params.f16_probs = options_.ggml_numerics;
    std::vector<float> att(N * HD);  // [N, H, D]
    attention_forward(att.data(), q.data(), k.data(), v.data(), B, T, H, KV, D, params);
    emit(HookEvent::Kind::LinearInput, static_cast<int>(l), &n.o, -1, att.data(), N, HD);
    std::vector<float> proj(N * C);  // [N, C]
    linear(proj.data(), n.o, att.data(), nullptr, N, HD, C);
    rmsnorm_forward(proj.data(), proj.data(), weight(n.post_attn_norm), N, C, eps);
    residual_forward(h.data(), proj.data(), N * C);

    // MLP (and the MoE block beside it).
    gemma4_ffn(l, h.data(), proj.data(), N);
    rmsnorm_forward(proj.data(), proj.data(), weight(n.post_ffw_norm), N, C, eps);
    residual_forward(h.data(), proj.data(), N * C);

    // Per-layer embedding: gelu(inp_gate · h) ⊙ ple_l → proj → post_norm → residual.
    if (const int64_t P = c.ple_dim; P > 0) {
        std::vector<float> gate(N * P), ple(N * P);  // [N, P]
        for (int64_t i = 0; i < N; ++i)
            std::copy_n(state + i * W + g.rows.ple_offset + l * P, P, ple.data() + i * P);
        emit(HookEvent::Kind::LinearInput, static_cast<int>(l), &n.inp_gate, -1, h.data(), N, C);
        linear(gate.data(), n.inp_gate, h.data(), nullptr, N, C, P);
        geglu_tanh_forward(gate.data(), gate.data(), ple.data(), N * P);
        emit(HookEvent::Kind::LinearInput, static_cast<int>(l), &n.proj, -1, gate.data(), N, P);
        linear(proj.data(), n.proj, gate.data(), nullptr, N, P, C);
        rmsnorm_forward(proj.data(), proj.data(), weight(n.post_norm), N, C, eps);
        residual_forward(h.data(), proj.data(), N * C);
    }
    if (const float* scale = weight_opt(n.out_scale))
        for (float& x : h) x *= scale[0];

    for (int64_t i = 0; i < N; ++i) std::copy_n(h.data() + i * C, C, state + i * W);
    emit(HookEvent::Kind::LayerOutput, static_cast<int>(l), nullptr, -1, h.data(), N, C);
}

}  // namespace quantlens
