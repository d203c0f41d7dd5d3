// Gated DeltaNet kernels (engine/layers/gated_deltanet.h): the chunked recurrence against
// its step-by-step reference twin, and both kernels against values worked by hand.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "engine/layers/gated_deltanet.h"

namespace quantlens {
namespace {

// The acceptance bound of the chunked form against the sequential one. Both accumulate in
// double and round to float once, so real disagreement is ~1e-7; 1e-5 catches any
// algebraic slip (a wrong decay or a missing term moves outputs by percents).
constexpr double kChunkedRelTol = 1e-5;

std::vector<float> random_vec(size_t n, uint32_t seed, float lo, float hi) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng);
    return v;
}

struct Inputs {
    std::vector<float> q, k, v, g, beta;
};

Inputs make_inputs(const DeltaRuleShape& s, uint32_t seed) {
    const auto qk = static_cast<size_t>(s.B * s.T * s.nk * s.dk);
    const auto nv = static_cast<size_t>(s.B * s.T * s.nv);
    Inputs in{random_vec(qk, seed, -1, 1), random_vec(qk, seed + 1, -1, 1),
              random_vec(nv * s.dv, seed + 2, -2, 2), random_vec(nv, seed + 3, -0.3f, 0.0f),
              random_vec(nv, seed + 4, 0.05f, 0.95f)};
    // As the layer feeds them: unit q/k rows (the delta rule is only stable so).
    l2norm_forward(in.q.data(), s.B * s.T * s.nk, s.dk, 1e-6f);
    l2norm_forward(in.k.data(), s.B * s.T * s.nk, s.dk, 1e-6f);
    return in;
}

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
    double max_ref = 0.0, max_diff = 0.0;
    for (size_t i = 0; i < a.size(); ++i) {
        max_ref = std::max(max_ref, std::fabs(static_cast<double>(b[i])));
        max_diff = std::max(max_diff, std::fabs(static_cast<double>(a[i]) - b[i]));
    }
    return max_diff / max_ref;
}

TEST(GatedDeltaNet, ChunkedMatchesSequentialOn512TokenChunks) {
    for (const bool tiled : {false, true}) {
        const DeltaRuleShape s{2, 512, 2, 4, 16, 8, tiled};
        const Inputs in = make_inputs(s, 7);
        std::vector<float> ref(static_cast<size_t>(s.B * s.T * s.nv * s.dv)), fast(ref.size());
        gated_delta_rule_ref(ref.data(), in.q.data(), in.k.data(), in.v.data(), in.g.data(),
                             in.beta.data(), s);
        gated_delta_rule_chunked(fast.data(), in.q.data(), in.k.data(), in.v.data(), in.g.data(),
                                 in.beta.data(), s, 64);
        EXPECT_LT(max_rel_diff(fast, ref), kChunkedRelTol) << "tiled " << tiled;
    }
}

TEST(GatedDeltaNet, ChunkedMatchesSequentialWithPartialChunks) {
    const DeltaRuleShape s{1, 100, 1, 3, 8, 12, false};  // 100 = 14·7 + 2
    const Inputs in = make_inputs(s, 11);
    std::vector<float> ref(static_cast<size_t>(s.T * s.nv * s.dv)), fast(ref.size());
    gated_delta_rule_ref(ref.data(), in.q.data(), in.k.data(), in.v.data(), in.g.data(),
                         in.beta.data(), s);
    for (const int64_t chunk : {1, 7, 64, 128}) {
        gated_delta_rule_chunked(fast.data(), in.q.data(), in.k.data(), in.v.data(), in.g.data(),
                                 in.beta.data(), s, chunk);
        EXPECT_LT(max_rel_diff(fast, ref), kChunkedRelTol) << "chunk " << chunk;
    }
}

TEST(GatedDeltaNet, RecurrenceByHand) {
    // dk = dv = 1, q = k = 1. Step 0: S = 0, u = 1·(2 − 0) = 2, S = 2, o = 2.
    // Step 1: S = 2·½ = 1, u = ½·(3 − 1) = 1, S = 2, o = 2. Step 2: S = 2·1 = 2,
    // u = ¼·(−2 − 2) = −1, S = 1, o = 1.
    const DeltaRuleShape s{1, 3, 1, 1, 1, 1, false};
    const std::vector<float> q{1, 1, 1}, k{1, 1, 1}, v{2, 3, -2};
    const std::vector<float> g{0.0f, std::log(0.5f), 0.0f}, beta{1.0f, 0.5f, 0.25f};
    for (const bool chunked : {false, true}) {
        std::vector<float> out(3);
        if (chunked)
            gated_delta_rule_chunked(out.data(), q.data(), k.data(), v.data(), g.data(),
                                     beta.data(), s, 2);
        else
            gated_delta_rule_ref(out.data(), q.data(), k.data(), v.data(), g.data(), beta.data(),
                                 s);
        EXPECT_NEAR(out[0], 2.0f, 1e-6f);
        EXPECT_NEAR(out[1], 2.0f, 1e-6f);
        EXPECT_NEAR(out[2], 1.0f, 1e-6f);
    }
}

TEST(GatedDeltaNet, GroupedAndTiledValueHeadsReadTheirQkHead) {
    // Two q/k heads with orthogonal unit keys; four value heads. Grouped: heads 0,1 read q/k
    // head 0. Tiled: heads 0,2 do. One step with β = 1 gives o = (q·k)·v.
    const std::vector<float> q{1, 0, 0, 1}, k{1, 0, 0, 1};  // [1, 1, 2, 2]
    const std::vector<float> v{1, 2, 3, 4}, g(4, 0.0f), beta(4, 1.0f);
    for (const bool tiled : {false, true}) {
        const DeltaRuleShape s{1, 1, 2, 4, 2, 1, tiled};
        std::vector<float> out(4);
        gated_delta_rule_ref(out.data(), q.data(), k.data(), v.data(), g.data(), beta.data(), s);
        EXPECT_EQ(out, v);  // q·k = 1 for each head's own q/k head, whichever it is
        const std::vector<float> q_swapped{0, 1, 1, 0};  // q of head 0 now matches k of head 1
        gated_delta_rule_ref(out.data(), q_swapped.data(), k.data(), v.data(), g.data(),
                             beta.data(), s);
        EXPECT_EQ(out, std::vector<float>(4, 0.0f));
    }
}

TEST(GatedDeltaNet, CausalConvByHand) {
    // One channel, K = 3 taps (oldest first) [1, 2, 3] over x = [1, 10, 100]:
    // t0: 3·1 = 3; t1: 2·1 + 3·10 = 32; t2: 1·1 + 2·10 + 3·100 = 321; then SiLU.
    const std::vector<float> x{1, 10, 100}, w{1, 2, 3};
    std::vector<float> out(3);
    causal_conv1d_silu_forward(out.data(), x.data(), w.data(), 1, 3, 1, 3);
    auto silu = [](double z) { return z / (1 + std::exp(-z)); };
    EXPECT_NEAR(out[0], silu(3), 1e-5);
    EXPECT_NEAR(out[1], silu(32), 1e-4);
    EXPECT_NEAR(out[2], silu(321), 1e-3);
    // Two sequences of the batch do not see each other.
    const std::vector<float> x2{1, 10, 5, 7}, w2{1, 2, 3};
    std::vector<float> out2(4);
    causal_conv1d_silu_forward(out2.data(), x2.data(), w2.data(), 2, 2, 1, 3);
    EXPECT_NEAR(out2[2], silu(15), 1e-5);
    EXPECT_NEAR(out2[3], silu(2 * 5 + 3 * 7), 1e-4);
}

TEST(GatedDeltaNet, GatedRmsNormByHand) {
    const std::vector<float> x{3, 4}, z{0, 2}, w{1, 2};
    std::vector<float> out(2);
    gated_rmsnorm_forward(out.data(), x.data(), z.data(), w.data(), 1, 2, 0.0f);
    const double rms = std::sqrt((9.0 + 16.0) / 2), silu2 = 2 / (1 + std::exp(-2.0));
    EXPECT_NEAR(out[0], 0.0, 1e-7);  // silu(0) = 0
    EXPECT_NEAR(out[1], 4 / rms * 2 * silu2, 1e-5);
}

}  // namespace
}  // namespace quantlens
