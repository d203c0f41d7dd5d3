// The engine's DeepSeek-V3 / GLM-4.5 parts (see engine.h): the layer plumbing — weights,
// hooks, rope — around the math of engine/layers/mla.h and engine/layers/moe_routing.h.
#include <cmath>

#include "core/error.h"
#include "engine/engine.h"
#include "engine/kernels.h"
#include "engine/layers/mla.h"
#include "engine/layers/moe_routing.h"
#include "model/model.h"
#include "model/names.h"

namespace quantlens {

namespace {

std::string tensor_name(int64_t l, const char* base, const char* suffix = "weight") {
    return "blk." + std::to_string(l) + "." + base + "." + suffix;
}

}  // namespace

void Engine::check_deepseek_shapes() const {
    const ModelConfig& c = config_;
    const int64_t C = c.hidden, H = c.n_heads, R = c.head_dim, P = c.qk_nope_dim;
    const int64_t L = c.kv_lora_rank, Q = c.q_lora_rank, V = c.v_head_dim;
    auto expect = [&](const std::string& name, const std::vector<int64_t>& ne) {
        expect_shape(name, ne, true, "the config");
    };
    for (int64_t l = 0; l < c.n_layers; ++l) {
        if (c.mla) {
            expect(tensor_name(l, "attn_q_a"), {C, Q});
            expect(tensor_name(l, "attn_q_a_norm"), {Q});
            expect(tensor_name(l, "attn_q_b"), {Q, H * (P + R)});
            expect(tensor_name(l, "attn_kv_a_mqa"), {C, L + R});
            expect(tensor_name(l, "attn_kv_a_norm"), {L});
            expect(tensor_name(l, "attn_k_b"), {P, L, H});
            expect(tensor_name(l, "attn_v_b"), {L, V, H});
        }
        if (!c.is_moe_layer(l)) continue;
        if (c.moe_sigmoid && model_.find(tensor_name(l, "exp_probs_b", "bias")))
            expect(tensor_name(l, "exp_probs_b", "bias"), {c.n_experts});
        if (c.shared_expert == SharedExpert::Ungated) {
            expect(tensor_name(l, "ffn_gate_shexp"), {C, c.shared_expert_ffn});
            expect(tensor_name(l, "ffn_up_shexp"), {C, c.shared_expert_ffn});
            expect(tensor_name(l, "ffn_down_shexp"), {c.shared_expert_ffn, C});
        }
    }
}

void Engine::mla_attention_block(int64_t l, float* h, float* xn, int64_t B, int64_t T) const {
    const ModelConfig& c = config_;
    const int64_t N = B * T, C = c.hidden, H = c.n_heads, R = c.head_dim, P = c.qk_nope_dim;
    const int64_t L = c.kv_lora_rank, Q = c.q_lora_rank, V = c.v_head_dim, QD = P + R;
    const auto layer = static_cast<int>(l);
    const std::string q_a = tensor_name(l, "attn_q_a"), q_b = tensor_name(l, "attn_q_b");
    const std::string kv_a = tensor_name(l, "attn_kv_a_mqa"), k_b = tensor_name(l, "attn_k_b");
    const std::string v_b = tensor_name(l, "attn_v_b"), o = tensor_name(l, "attn_output");
    rmsnorm_forward(xn, h, weight(tensor_name(l, "attn_norm")), N, C,
                    static_cast<float>(c.rms_eps));

    // q through the q_lora bottleneck: [N, Q] → RMSNorm → [N, H, P + R]
    emit(HookEvent::Kind::LinearInput, layer, &q_a, -1, xn, N, C);
    std::vector<float> qa(N * Q), q(N * H * QD);
    linear(qa.data(), q_a, xn, nullptr, N, C, Q);
    rmsnorm_forward(qa.data(), qa.data(), weight(tensor_name(l, "attn_q_a_norm")), N, Q,
                    kMlaLatentNormEps);
    emit(HookEvent::Kind::LinearInput, layer, &q_b, -1, qa.data(), N, Q);
    linear(q.data(), q_b, qa.data(), nullptr, N, Q, H * QD);

    // latent kv [N, L] (normed) and the shared rope key [N, R]
    emit(HookEvent::Kind::LinearInput, layer, &kv_a, -1, xn, N, C);
    std::vector<float> kva(N * (L + R)), ckv(N * L), kr(N * R);
    linear(kva.data(), kv_a, xn, nullptr, N, C, L + R);
    for (int64_t n = 0; n < N; ++n) {
        std::copy_n(kva.data() + n * (L + R), L, ckv.data() + n * L);
        std::copy_n(kva.data() + n * (L + R) + L, R, kr.data() + n * R);
    }
    rmsnorm_forward(ckv.data(), ckv.data(), weight(tensor_name(l, "attn_kv_a_norm")), N, L,
                    kMlaLatentNormEps);

    // rope on q's last R channels of each head and on kr (interleaved pairs: DeepSeek's
    // rope_interleave, llama.cpp's normal mode), cos/sin times yarn's attention factor
    std::vector<float> qr(N * H * R), ql(N * H * L);
    for (int64_t r = 0; r < N * H; ++r) std::copy_n(q.data() + r * QD + P, R, qr.data() + r * R);
    const std::vector<double> freqs = rope_frequencies(c, T);
    const double mscale = rope_attention_factor(c);
    rope_forward(qr.data(), B, T, H, R, freqs, c.rope_neox(), options_.rope_bf16_freqs, mscale);
    rope_forward(kr.data(), B, T, 1, R, freqs, c.rope_neox(), options_.rope_bf16_freqs, mscale);

    // attn_k_b and attn_v_b hold one matrix per head: head hd maps the first K values of its
    // row of in [N, H, in_width] to its row of out [N, H, M].
    auto per_head_linear = [&](float* out, const std::string& w, const float* in, int64_t in_width,
                               int64_t K, int64_t M) {
        std::vector<float> x(N * K), y(N * M);
        for (int64_t hd = 0; hd < H; ++hd) {
            for (int64_t n = 0; n < N; ++n)
                std::copy_n(in + (n * H + hd) * in_width, K, x.data() + n * K);
            emit(HookEvent::Kind::LinearInput, layer, &w, static_cast<int>(hd), x.data(), N, K);
            linear(y.data(), w, x.data(), nullptr, N, K, M, hd);
            for (int64_t n = 0; n < N; ++n)
                std::copy_n(y.data() + n * M, M, out + (n * H + hd) * M);
        }
    };

    // each head's nope query into the latent space: q_lat = k_bₕ · q_nope
    per_head_linear(ql.data(), k_b, q.data(), QD, P, L);
    const float scale = mla_score_scale(c);
    std::vector<float> ol(N * H * L);  // [N, H, L]
    mla_latent_attention(ol.data(), ql.data(), qr.data(), ckv.data(), kr.data(), B, T, H, L, R,
                         scale);

    // back to v_head_dim per head: v = v_bₕ · out_lat, then the output projection
    std::vector<float> att(N * H * V);  // [N, H, V]
    per_head_linear(att.data(), v_b, ol.data(), L, L, V);
    emit(HookEvent::Kind::LinearInput, layer, &o, -1, att.data(), N, H * V);
    std::vector<float> proj(N * C);
    linear(proj.data(), o, att.data(), nullptr, N, H * V, C);
    residual_forward(h, proj.data(), N * C);
}

void Engine::route_sigmoid(int64_t l, const float* logits, int64_t N,
                           std::vector<std::vector<std::pair<int64_t, float>>>& routed) const {
    const ModelConfig& c = config_;
    SigmoidRouting r;
    r.n_experts = c.n_experts;
    r.k = c.n_experts_used;
    r.n_groups = c.n_expert_groups;
    r.groups_used = c.n_expert_groups_used;
    r.renormalize = c.moe_renormalize;
    r.scale = static_cast<float>(c.moe_weights_scale);
    const float* bias = weight_opt(tensor_name(l, "exp_probs_b", "bias"));
    std::vector<int32_t> ids(N * r.k);
    std::vector<float> w(N * r.k);
    route_sigmoid_grouped(ids.data(), w.data(), logits, bias, N, r);
    for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < r.k; ++i) routed[ids[n * r.k + i]].emplace_back(n, w[n * r.k + i]);
}

void Engine::ungated_shared_expert_add(int64_t l, const float* xn, float* out, int64_t N) const {
    const int64_t C = config_.hidden, F = config_.shared_expert_ffn;
    const auto layer = static_cast<int>(l);
    const std::string gate = tensor_name(l, "ffn_gate_shexp"), up = tensor_name(l, "ffn_up_shexp");
    const std::string down = tensor_name(l, "ffn_down_shexp");
    std::vector<float> g(N * F), u(N * F), y(N * C);
    emit(HookEvent::Kind::LinearInput, layer, &gate, -1, xn, N, C);
    emit(HookEvent::Kind::LinearInput, layer, &up, -1, xn, N, C);
    linear(g.data(), gate, xn, nullptr, N, C, F);
    linear(u.data(), up, xn, nullptr, N, C, F);
    swiglu_forward(g.data(), g.data(), u.data(), N * F);
    emit(HookEvent::Kind::LinearInput, layer, &down, -1, g.data(), N, F);
    linear(y.data(), down, g.data(), nullptr, N, F, C);
    residual_forward(out, y.data(), N * C);
}

}  // namespace quantlens
