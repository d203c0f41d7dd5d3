// DeepSeek-V3's engine layers against their specifications: the grouped sigmoid routing's
// fast path against its reference (and a hand-worked token), the absorbed MLA (latent-space
// attention, engine/layers/mla.h) against its scalar twin and against transformers'
// decompressed form, and yarn's frequencies and score factor against values worked out from
// transformers' _compute_yarn_parameters by hand (python, math module only).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "engine/kernels.h"
#include "engine/layers/mla.h"
#include "engine/layers/moe_routing.h"
#include "formats/model_config.h"

#include "support/random_data.h"

namespace quantlens {
namespace {

using test_support::random_normal;

TEST(SigmoidRouting, HandWorkedToken) {
    // 4 experts in 2 groups, 1 group kept, top 1. sigmoid scores ≈ .731 .5 .622 .599; the
    // bias lifts expert 3 (.599 + .3) over group 0's best (.731 + 0) and its group's sum
    // (.622 + .899) over group 0's (.731 + .5): expert 3 is chosen, weighted by its
    // unbiased score, renormalized to 1, times 2.5.
    const float logits[4] = {1.0f, 0.0f, 0.5f, 0.4f};
    const float bias[4] = {0.0f, 0.0f, 0.0f, 0.3f};
    SigmoidRouting r{.n_experts = 4,
                     .k = 1,
                     .n_groups = 2,
                     .groups_used = 1,
                     .renormalize = true,
                     .scale = 2.5f};
    int32_t id = -1;
    float w = 0;
    route_sigmoid_grouped(&id, &w, logits, bias, 1, r);
    EXPECT_EQ(id, 3);
    EXPECT_FLOAT_EQ(w, 2.5f);
    r.renormalize = false;
    route_sigmoid_grouped(&id, &w, logits, bias, 1, r);
    EXPECT_FLOAT_EQ(w, 2.5f / (1.0f + std::exp(-0.4f)));
    // Without the bias, group 0 wins and expert 0 with it.
    route_sigmoid_grouped(&id, &w, logits, nullptr, 1, r);
    EXPECT_EQ(id, 0);
}

TEST(SigmoidRouting, FastMatchesReference) {
    const int64_t N = 300;
    for (const auto& [E, k, G, used] : std::vector<std::array<int64_t, 4>>{
             {8, 2, 2, 1}, {8, 3, 4, 2}, {16, 4, 1, 1}, {32, 8, 8, 4}}) {
        SCOPED_TRACE(E * 1000 + k * 100 + G * 10 + used);
        SigmoidRouting r{.n_experts = E,
                         .k = k,
                         .n_groups = G,
                         .groups_used = used,
                         .renormalize = (E % 16) != 0,
                         .scale = 1.7f};
        const auto logits = random_normal(static_cast<size_t>(N * E), 7 + E, 2.0f);
        const auto bias = random_normal(static_cast<size_t>(E), 3 + E, 0.2f);
        std::vector<int32_t> a(N * k), b(N * k);
        std::vector<float> wa(N * k), wb(N * k);
        route_sigmoid_grouped(a.data(), wa.data(), logits.data(), bias.data(), N, r);
        route_sigmoid_grouped_ref(b.data(), wb.data(), logits.data(), bias.data(), N, r);
        EXPECT_EQ(a, b);
        for (size_t i = 0; i < wa.size(); ++i) EXPECT_FLOAT_EQ(wa[i], wb[i]) << i;
        if (used == 1) {  // all chosen experts lie in the one kept group
            for (int64_t n = 0; n < N; ++n)
                for (int64_t i = 0; i < k; ++i)
                    EXPECT_EQ(a[n * k + i] / (E / G), a[n * k] / (E / G));
        }
    }
}

TEST(MlaAttention, LatentFastMatchesReference) {
    const int64_t B = 2, T = 37, H = 3, L = 24, R = 8;
    const auto ql = random_normal(B * T * H * L, 1), qr = random_normal(B * T * H * R, 2);
    const auto ckv = random_normal(B * T * L, 3), kr = random_normal(B * T * R, 4);
    std::vector<float> fast(B * T * H * L), ref(B * T * H * L);
    mla_latent_attention(fast.data(), ql.data(), qr.data(), ckv.data(), kr.data(), B, T, H, L, R,
                         0.15f);
    mla_latent_attention_ref(ref.data(), ql.data(), qr.data(), ckv.data(), kr.data(), B, T, H, L, R,
                             0.15f);
    for (size_t i = 0; i < fast.size(); ++i) EXPECT_NEAR(fast[i], ref[i], 2e-5f) << i;
}

TEST(MlaAttention, AbsorbedEqualsDecompressed) {
    // The engine's order of the sums (q_lat = k_bₕ·q_nope, latent attention, v = v_bₕ·out_lat)
    // against transformers' (decompress k_nope and v per head, then attention).
    const int64_t B = 1, T = 29, H = 4, P = 16, R = 8, L = 32, V = 12;
    const auto qn = random_normal(B * T * H * P, 11), qr = random_normal(B * T * H * R, 12);
    const auto ckv = random_normal(B * T * L, 13), kr = random_normal(B * T * R, 14);
    const auto kv_b = random_normal(H * (P + V) * L, 15, 0.2f);
    const float scale = 1.0f / std::sqrt(float(P + R));
    std::vector<float> want(B * T * H * V);
    mla_attention_decompressed_ref(want.data(), qn.data(), qr.data(), ckv.data(), kr.data(),
                                   kv_b.data(), B, T, H, P, R, L, V, scale);
    std::vector<float> ql(B * T * H * L), ol(B * T * H * L), got(B * T * H * V);
    for (int64_t n = 0; n < B * T; ++n)
        for (int64_t h = 0; h < H; ++h)
            for (int64_t x = 0; x < L; ++x) {
                double acc = 0;  // Σ_j k_rows[j][x] · q_nope[j]
                for (int64_t j = 0; j < P; ++j)
                    acc += double(kv_b[(h * (P + V) + j) * L + x]) * qn[(n * H + h) * P + j];
                ql[(n * H + h) * L + x] = static_cast<float>(acc);
            }
    mla_latent_attention(ol.data(), ql.data(), qr.data(), ckv.data(), kr.data(), B, T, H, L, R,
                         scale);
    for (int64_t n = 0; n < B * T; ++n)
        for (int64_t h = 0; h < H; ++h)
            for (int64_t i = 0; i < V; ++i) {
                double acc = 0;
                for (int64_t x = 0; x < L; ++x)
                    acc += double(kv_b[(h * (P + V) + P + i) * L + x]) * ol[(n * H + h) * L + x];
                got[(n * H + h) * V + i] = static_cast<float>(acc);
            }
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-4f) << i;
}

TEST(YarnRope, FrequenciesAndScoreScale) {
    // The deepseek3-mla fixture's rope: 8 rotated channels, θ 10000, factor 4 over 256
    // original positions, beta 32/1, mscale = mscale_all_dim = 0.707.
    ModelConfig c;
    c.head_dim = 8;
    c.rope_theta = 10000.0;
    c.rope_scaling.kind = RopeScaling::Kind::Yarn;
    c.rope_scaling.factor = 4.0;
    c.rope_scaling.original_max_positions = 256;
    c.rope_scaling.mscale = c.rope_scaling.mscale_all_dim = 0.707;
    c.rope_scaling.attention_factor = 1.0;
    const std::vector<double> f = rope_frequencies(c, 512);
    const double want[4] = {1.0, 0.0625, 0.0025, 0.00025};
    ASSERT_EQ(f.size(), 4u);
    for (int i = 0; i < 4; ++i) EXPECT_NEAR(f[i], want[i], 1e-15) << i;
    EXPECT_NEAR(yarn_score_scale(c), 1.2056281810045126, 1e-12);
    EXPECT_EQ(rope_attention_factor(c), 1.0);
}

}  // namespace
}  // namespace quantlens
