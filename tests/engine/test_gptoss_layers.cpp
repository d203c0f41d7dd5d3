// gpt-oss's layer math (src/engine/layers): attention with sinks against its double-precision
// twin, and what a sink does (a sink of −∞ is plain attention; a large sink takes weight away
// from the values); the clamped SwiGLU against hand-computed values and its twin.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "core/error.h"
#include "engine/engine.h"
#include "engine/kernels.h"
#include "engine/layers/attention_sinks.h"
#include "engine/layers/clamped_swiglu.h"

#include "support/random_data.h"

namespace quantlens {
namespace {

using test_support::kSgemmRelTol;
using test_support::max_rel_diff;
using test_support::random_vec;

TEST(GptOssLayers, AttentionSinksMatchReference) {
    engine_init_blas();
    for (auto [B, T, H, KV, D, window] :
         {std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>{2, 150, 4, 2, 32, 0},
          {1, 200, 4, 2, 32, 64},
          {3, 1, 2, 1, 8, 0},
          {1, 130, 8, 2, 16, 17}}) {
        const auto q = random_vec(B * T * H * D, 4), k = random_vec(B * T * KV * D, 5),
                   v = random_vec(B * T * KV * D, 6), sinks = random_vec(H, 7, 2.0f);
        AttentionParams p;
        p.window = window;
        std::vector<float> fast(B * T * H * D), ref(B * T * H * D);
        attention_sinks_forward(fast.data(), q.data(), k.data(), v.data(), sinks.data(), B, T, H,
                                KV, D, p);
        attention_sinks_forward_ref(ref.data(), q.data(), k.data(), v.data(), sinks.data(), B, T, H,
                                    KV, D, p);
        EXPECT_LT(max_rel_diff(fast, ref), kSgemmRelTol) << T << " window " << window;
    }
}

TEST(GptOssLayers, SinkOfMinusInfinityIsPlainAttention) {
    engine_init_blas();
    const int64_t B = 1, T = 90, H = 4, KV = 2, D = 16;
    const auto q = random_vec(B * T * H * D, 8), k = random_vec(B * T * KV * D, 9),
               v = random_vec(B * T * KV * D, 10);
    const std::vector<float> sinks(H, -std::numeric_limits<float>::infinity());
    AttentionParams p;
    p.window = 32;
    std::vector<float> with(B * T * H * D), plain(B * T * H * D);
    attention_sinks_forward(with.data(), q.data(), k.data(), v.data(), sinks.data(), B, T, H, KV, D,
                            p);
    attention_forward(plain.data(), q.data(), k.data(), v.data(), B, T, H, KV, D, p);
    EXPECT_LT(max_rel_diff(with, plain), 1e-6f);
}

TEST(GptOssLayers, SinkTakesWeightFromTheValues) {
    // Query 0 sees key 0 only: without a sink its output is v0; with sink s and score z the
    // weight on v0 is e^z / (e^z + e^s).
    const int64_t D = 4;
    const std::vector<float> q = {1, 0, 0, 0}, k = {2, 0, 0, 0}, v = {1, 2, 3, 4};
    const std::vector<float> sinks = {1.0f};
    std::vector<float> out(D);
    attention_sinks_forward_ref(out.data(), q.data(), k.data(), v.data(), sinks.data(), 1, 1, 1, 1,
                                D);
    const double z = 2.0 / std::sqrt(4.0), w = std::exp(z) / (std::exp(z) + std::exp(1.0));
    for (int64_t d = 0; d < D; ++d) EXPECT_NEAR(out[d], w * v[d], 1e-6);
}

TEST(GptOssLayers, ClampedSwigluValues) {
    // (up + 1) · g · σ(1.702 g), g = min(gate, 7), up clamped to ±7.
    const std::vector<float> gate = {0.5f, -2.0f, 9.0f, 3.0f, 7.0f};
    const std::vector<float> up = {0.25f, 10.0f, -1.0f, -8.0f, 7.5f};
    auto expected = [](double g, double u) {
        g = std::min(g, 7.0);
        u = std::clamp(u, -7.0, 7.0);
        return (u + 1.0) * g / (1.0 + std::exp(-1.702 * g));
    };
    std::vector<float> fast(gate.size()), ref(gate.size());
    clamped_swiglu_forward(fast.data(), gate.data(), up.data(), 5, 7.0f, 1.702f);
    clamped_swiglu_forward_ref(ref.data(), gate.data(), up.data(), 5, 7.0, 1.702);
    for (size_t i = 0; i < gate.size(); ++i) {
        EXPECT_NEAR(fast[i], expected(gate[i], up[i]), 1e-5 * (1 + std::fabs(fast[i]))) << i;
        EXPECT_NEAR(ref[i], expected(gate[i], up[i]), 1e-6 * (1 + std::fabs(ref[i]))) << i;
    }
    // Gate 9 is clamped to 7 and up −1 gives (−1 + 1) = 0; up −8 clamps to −7: −6·3·σ(5.106).
    EXPECT_EQ(fast[2], 0.0f);
    EXPECT_NEAR(fast[3], -6.0 * 3.0 / (1.0 + std::exp(-1.702 * 3.0)), 1e-5);
}

}  // namespace
}  // namespace quantlens
