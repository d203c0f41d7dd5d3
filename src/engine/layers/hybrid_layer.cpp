// The decoder layer of the Gated DeltaNet hybrids (Qwen3-Next, Qwen3.5 dense and MoE) on
// the CPU engine, in llama.cpp's tensor layout (model/families/deltanet_blocks.h):
//
//   h += mixer(RMSNorm(h; attn_norm));   h += ffn(RMSNorm(h; post_attention_norm))
//
// mixer, Gated DeltaNet layer (transformers' Qwen3NextGatedDeltaNet):
//   qkv = attn_qkv·x → causal depthwise conv (ssm_conv1d) → SiLU → q | k | v;
//   q, k L2-normalized (eps 1e-6), q × 1/sqrt(dk); z = attn_gate·x;
//   β = sigmoid(b), g = ssm_a · softplus(a + ssm_dt.bias) with b, a from ssm_ba (per q/k head
//   its value heads' b then a) or ssm_beta / ssm_alpha;
//   o = gated delta rule (engine/layers/gated_deltanet.h, chunked or step by step);
//   out = ssm_out · (RMSNorm(o per value head; ssm_norm) · silu(z)).
// mixer, full attention layer (Qwen3NextAttention): attn_q gives each head's query and its
//   gate; q/k RMSNorm per head, partial neox RoPE, causal GQA softmax attention, output ×
//   sigmoid(gate), attn_output.
// ffn: the dense SwiGLU MLP, or the routed MoE (Engine::ffn_moe) plus the shared expert
//   scaled by sigmoid(ffn_gate_inp_shexp · x).
// Each layer computes from its own input only (no state crosses layers), so a sweep's
// prefix cache, which restarts at a layer's cached input, recomputes its recurrence exactly.
#include <cmath>

#include "core/error.h"
#include "engine/engine.h"
#include "engine/kernels.h"
#include "engine/layers/gated_deltanet.h"
#include "model/model.h"
#include "model/names.h"

namespace quantlens {

namespace {

std::string tensor(int64_t l, const char* base) {
    return "blk." + std::to_string(l) + "." + base;
}

double softplus(double x) {  // torch's, with its threshold 20
    return x > 20.0 ? x : std::log1p(std::exp(x));
}

float sigmoid(float x) {
    return 1.0f / (1.0f + std::exp(-x));
}

}  // namespace

void Engine::check_hybrid_shapes() const {
    const ModelConfig& c = config_;
    const int64_t C = c.hidden, HD = c.n_heads * c.head_dim, KD = c.n_kv_heads * c.head_dim;
    const int64_t nv = c.ssm_v_heads, VD = c.ssm_v_heads * c.ssm_v_dim;
    auto expect = [&](const std::string& name, std::vector<int64_t> ne) {
        const TensorInfo* t = model_.find(name);
        QL_CHECK(t != nullptr, "{}: tensor '{}' is missing (expected shape {} from the config)",
                 model_.path(), name, format_shape(ne));
        QL_CHECK(same_shape(t->ne, ne),
                 "{}: tensor '{}' has shape {}, but the config (hidden {}, heads {}/{}, head_dim "
                 "{}, linear heads {}/{} of {}/{}, conv {}, ffn {}, experts {}) implies {}",
                 model_.path(), name, format_shape(t->ne), C, c.n_heads, c.n_kv_heads, c.head_dim,
                 c.ssm_k_heads, nv, c.ssm_k_dim, c.ssm_v_dim, c.ssm_conv_kernel, c.ffn, c.n_experts,
                 format_shape(ne));
    };
    expect("token_embd.weight", {C, c.vocab});
    expect("output_norm.weight", {C});
    QL_CHECK(c.ssm_v_heads % c.ssm_k_heads == 0 && c.ssm_conv_kernel > 0,
             "{}: {} value heads for {} q/k heads, conv kernel {}", model_.path(), nv,
             c.ssm_k_heads, c.ssm_conv_kernel);
    for (int64_t l = 0; l < c.n_layers; ++l) {
        expect(tensor(l, "attn_norm.weight"), {C});
        expect(tensor(l, "post_attention_norm.weight"), {C});
        if (c.is_linear_layer(l)) {
            expect(tensor(l, "attn_qkv.weight"), {C, c.ssm_conv_dim()});
            expect(tensor(l, "attn_gate.weight"), {C, VD});
            if (c.ssm_fused_ba) {
                expect(tensor(l, "ssm_ba.weight"), {C, 2 * nv});
            } else {
                expect(tensor(l, "ssm_beta.weight"), {C, nv});
                expect(tensor(l, "ssm_alpha.weight"), {C, nv});
            }
            expect(tensor(l, "ssm_conv1d.weight"), {c.ssm_conv_kernel, c.ssm_conv_dim()});
            expect(tensor(l, "ssm_dt.bias"), {nv});
            expect(tensor(l, "ssm_a"), {nv});
            expect(tensor(l, "ssm_norm.weight"), {c.ssm_v_dim});
            expect(tensor(l, "ssm_out.weight"), {VD, C});
        } else {
            expect(tensor(l, "attn_q.weight"), {C, 2 * HD});
            expect(tensor(l, "attn_k.weight"), {C, KD});
            expect(tensor(l, "attn_v.weight"), {C, KD});
            expect(tensor(l, "attn_q_norm.weight"), {c.head_dim});
            expect(tensor(l, "attn_k_norm.weight"), {c.head_dim});
            expect(tensor(l, "attn_output.weight"), {HD, C});
        }
        if (c.is_moe()) {
            expect(tensor(l, "ffn_gate_inp.weight"), {C, c.n_experts});
            expect(tensor(l, "ffn_gate_exps.weight"), {C, c.ffn, c.n_experts});
            expect(tensor(l, "ffn_up_exps.weight"), {C, c.ffn, c.n_experts});
            expect(tensor(l, "ffn_down_exps.weight"), {c.ffn, C, c.n_experts});
            if (c.shared_expert == SharedExpert::SigmoidGated) {
                expect(tensor(l, "ffn_gate_inp_shexp.weight"), {C});
                expect(tensor(l, "ffn_gate_shexp.weight"), {C, c.shared_expert_ffn});
                expect(tensor(l, "ffn_up_shexp.weight"), {C, c.shared_expert_ffn});
                expect(tensor(l, "ffn_down_shexp.weight"), {c.shared_expert_ffn, C});
            }
        } else {
            expect(tensor(l, "ffn_gate.weight"), {C, c.ffn});
            expect(tensor(l, "ffn_up.weight"), {C, c.ffn});
            expect(tensor(l, "ffn_down.weight"), {c.ffn, C});
        }
    }
}

void Engine::hybrid_layer(int64_t l, float* h, int64_t B, int64_t T) const {
    const ModelConfig& c = config_;
    const int64_t N = B * T, C = c.hidden;
    const auto eps = static_cast<float>(c.rms_eps);
    std::vector<float> xn(N * C), out(N * C);  // [N, C]
    rmsnorm_forward(xn.data(), h, weight(tensor(l, "attn_norm.weight")), N, C, eps);
    if (c.is_linear_layer(l))
        deltanet_block(l, xn.data(), out.data(), B, T);
    else
        gated_attention_block(l, xn.data(), out.data(), B, T);
    residual_forward(h, out.data(), N * C);
    rmsnorm_forward(xn.data(), h, weight(tensor(l, "post_attention_norm.weight")), N, C, eps);
    if (c.is_moe()) {
        ffn_moe(l, xn.data(), out.data(), N);
        if (c.shared_expert == SharedExpert::SigmoidGated)
            shared_expert_add(l, xn.data(), out.data(), N);
    } else {
        ffn_dense(l, xn.data(), out.data(), N);
    }
    residual_forward(h, out.data(), N * C);
    emit(HookEvent::Kind::LayerOutput, static_cast<int>(l), nullptr, -1, h, N, C);
}

void Engine::deltanet_block(int64_t l, const float* xn, float* out, int64_t B, int64_t T) const {
    const ModelConfig& c = config_;
    const int64_t N = B * T, C = c.hidden, nk = c.ssm_k_heads, nv = c.ssm_v_heads;
    const int64_t dk = c.ssm_k_dim, dv = c.ssm_v_dim, CH = c.ssm_conv_dim(), VD = nv * dv;
    const int64_t QK = nk * dk;
    const std::string qkv_name = tensor(l, "attn_qkv.weight"),
                      z_name = tensor(l, "attn_gate.weight");
    const std::string out_name = tensor(l, "ssm_out.weight");
    std::vector<float> mixed(N * CH), z(N * VD), b(N * nv), a(N * nv);  // [N, ·]
    emit(HookEvent::Kind::LinearInput, static_cast<int>(l), &qkv_name, -1, xn, N, C);
    linear(mixed.data(), qkv_name, xn, nullptr, N, C, CH);
    emit(HookEvent::Kind::LinearInput, static_cast<int>(l), &z_name, -1, xn, N, C);
    linear(z.data(), z_name, xn, nullptr, N, C, VD);
    if (c.ssm_fused_ba) {  // ssm_ba rows: per q/k head g, its r value heads' b, then their a
        const std::string ba_name = tensor(l, "ssm_ba.weight");
        std::vector<float> ba(N * 2 * nv);  // [N, 2·nv]
        emit(HookEvent::Kind::LinearInput, static_cast<int>(l), &ba_name, -1, xn, N, C);
        linear(ba.data(), ba_name, xn, nullptr, N, C, 2 * nv);
        const int64_t r = nv / nk;
        for (int64_t n = 0; n < N; ++n)
            for (int64_t g = 0; g < nk; ++g)
                for (int64_t j = 0; j < r; ++j) {
                    b[n * nv + g * r + j] = ba[n * 2 * nv + g * 2 * r + j];
                    a[n * nv + g * r + j] = ba[n * 2 * nv + g * 2 * r + r + j];
                }
    } else {
        const std::string b_name = tensor(l, "ssm_beta.weight"),
                          a_name = tensor(l, "ssm_alpha.weight");
        emit(HookEvent::Kind::LinearInput, static_cast<int>(l), &b_name, -1, xn, N, C);
        linear(b.data(), b_name, xn, nullptr, N, C, nv);
        emit(HookEvent::Kind::LinearInput, static_cast<int>(l), &a_name, -1, xn, N, C);
        linear(a.data(), a_name, xn, nullptr, N, C, nv);
    }
    std::vector<float> conv(N * CH);  // [B, T, CH]
    causal_conv1d_silu_forward(conv.data(), mixed.data(), weight(tensor(l, "ssm_conv1d.weight")), B,
                               T, CH, c.ssm_conv_kernel);
    std::vector<float> q(N * QK), k(N * QK), v(N * VD);  // [N, nk, dk], [N, nv, dv]
    for (int64_t n = 0; n < N; ++n) {
        const float* row = conv.data() + n * CH;
        std::copy_n(row, QK, q.data() + n * QK);
        std::copy_n(row + QK, QK, k.data() + n * QK);
        std::copy_n(row + 2 * QK, VD, v.data() + n * VD);
    }
    l2norm_forward(q.data(), N * nk, dk, kDeltaNetL2NormEps);
    l2norm_forward(k.data(), N * nk, dk, kDeltaNetL2NormEps);
    const float q_scale = 1.0f / std::sqrt(static_cast<float>(dk));
    for (float& x : q) x *= q_scale;
    const float* A = weight(tensor(l, "ssm_a"));  // −exp(A_log)
    const float* dt_bias = weight(tensor(l, "ssm_dt.bias"));
    std::vector<float> g(N * nv), beta(N * nv);  // [N, nv]
    for (int64_t n = 0; n < N; ++n)
        for (int64_t hh = 0; hh < nv; ++hh) {
            const int64_t i = n * nv + hh;
            g[i] = static_cast<float>(A[hh] * softplus(static_cast<double>(a[i]) + dt_bias[hh]));
            beta[i] = sigmoid(b[i]);
        }
    std::vector<float> o(N * VD);  // [B, T, nv, dv]
    const DeltaRuleShape shape{B, T, nk, nv, dk, dv, c.ssm_v_tiled};
    if (options_.deltanet_sequential)
        gated_delta_rule_ref(o.data(), q.data(), k.data(), v.data(), g.data(), beta.data(), shape);
    else
        gated_delta_rule_chunked(o.data(), q.data(), k.data(), v.data(), g.data(), beta.data(),
                                 shape);
    gated_rmsnorm_forward(o.data(), o.data(), z.data(), weight(tensor(l, "ssm_norm.weight")),
                          N * nv, dv, static_cast<float>(c.rms_eps));
    emit(HookEvent::Kind::LinearInput, static_cast<int>(l), &out_name, -1, o.data(), N, VD);
    linear(out, out_name, o.data(), nullptr, N, VD, C);
}

void Engine::gated_attention_block(int64_t l, const float* xn, float* out, int64_t B,
                                   int64_t T) const {
    const ModelConfig& c = config_;
    const int64_t N = B * T, C = c.hidden, H = c.n_heads, KV = c.n_kv_heads, D = c.head_dim;
    const auto eps = static_cast<float>(c.rms_eps);
    const std::string q_name = tensor(l, "attn_q.weight"), k_name = tensor(l, "attn_k.weight");
    const std::string v_name = tensor(l, "attn_v.weight"), o_name = tensor(l, "attn_output.weight");
    if (hook_) {
        for (const std::string* w : {&q_name, &k_name, &v_name})
            emit(HookEvent::Kind::LinearInput, static_cast<int>(l), w, -1, xn, N, C);
    }
    std::vector<float> qg(N * 2 * H * D), q(N * H * D), gate(N * H * D);  // per head: q | gate
    std::vector<float> k(N * KV * D), v(N * KV * D);
    linear(qg.data(), q_name, xn, nullptr, N, C, 2 * H * D);
    linear(k.data(), k_name, xn, nullptr, N, C, KV * D);
    linear(v.data(), v_name, xn, nullptr, N, C, KV * D);
    for (int64_t n = 0; n < N; ++n)
        for (int64_t hh = 0; hh < H; ++hh) {
            const float* src = qg.data() + (n * H + hh) * 2 * D;
            std::copy_n(src, D, q.data() + (n * H + hh) * D);
            std::copy_n(src + D, D, gate.data() + (n * H + hh) * D);
        }
    rmsnorm_forward(q.data(), q.data(), weight(tensor(l, "attn_q_norm.weight")), N * H, D, eps);
    rmsnorm_forward(k.data(), k.data(), weight(tensor(l, "attn_k_norm.weight")), N * KV, D, eps);
    const std::vector<double> freqs = rope_frequencies(c, T, false);
    rope_forward(q.data(), B, T, H, D, freqs, true, options_.rope_bf16_freqs);
    rope_forward(k.data(), B, T, KV, D, freqs, true, options_.rope_bf16_freqs);
    if (options_.ggml_numerics) {  // F16 KV cache; Q meets F16 K in the KQ product
        round_activations(q.data(), N, H * D, ActRounding::F16);
        round_activations(k.data(), N, KV * D, ActRounding::F16);
        round_activations(v.data(), N, KV * D, ActRounding::F16);
    }
    AttentionParams params;
    params.f16_probs = options_.ggml_numerics;
    std::vector<float> att(N * H * D);  // [N, H, D]
    attention_forward(att.data(), q.data(), k.data(), v.data(), B, T, H, KV, D, params);
    for (size_t i = 0; i < att.size(); ++i) att[i] *= sigmoid(gate[i]);
    emit(HookEvent::Kind::LinearInput, static_cast<int>(l), &o_name, -1, att.data(), N, H * D);
    linear(out, o_name, att.data(), nullptr, N, H * D, C);
}

void Engine::shared_expert_add(int64_t l, const float* xn, float* out, int64_t N) const {
    const int64_t C = config_.hidden, F = config_.shared_expert_ffn;
    const std::string gate_name = tensor(l, "ffn_gate_shexp.weight");
    const std::string up_name = tensor(l, "ffn_up_shexp.weight");
    const std::string down_name = tensor(l, "ffn_down_shexp.weight");
    const std::string router_name = tensor(l, "ffn_gate_inp_shexp.weight");
    if (hook_) {
        for (const std::string* w : {&gate_name, &up_name, &router_name})
            emit(HookEvent::Kind::LinearInput, static_cast<int>(l), w, -1, xn, N, C);
    }
    std::vector<float> gate(N * F), up(N * F), y(N * C), s(N);  // [N, F], [N, C], [N]
    linear(gate.data(), gate_name, xn, nullptr, N, C, F);
    linear(up.data(), up_name, xn, nullptr, N, C, F);
    linear(s.data(), router_name, xn, nullptr, N, C, 1);
    swiglu_forward(gate.data(), gate.data(), up.data(), N * F);
    emit(HookEvent::Kind::LinearInput, static_cast<int>(l), &down_name, -1, gate.data(), N, F);
    linear(y.data(), down_name, gate.data(), nullptr, N, F, C);
    for (int64_t n = 0; n < N; ++n) {
        const float w = sigmoid(s[n]);
        for (int64_t ch = 0; ch < C; ++ch) out[n * C + ch] += w * y[n * C + ch];
    }
}

}  // namespace quantlens
