// Sums reduced outside the collectors (the GPU's, engine/cuda/cuda_stats.h) handed to them:
// ActivationCollector::adopt_moments / adopt_layer and HessianCollector::add_sum give the
// statistics the hook path gives for the same rows, and keep its filters. Runs without a GPU:
// the sums here are the CPU's own.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "analysis/measure/activation_stats.h"
#include "analysis/measure/hessian.h"
#include "core/error.h"

namespace quantlens {
namespace {

std::vector<float> random_rows(int64_t rows, int64_t cols, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> g(0.3f, 1.5f);
    std::vector<float> x(static_cast<size_t>(rows * cols));
    for (float& v : x) v = g(rng);
    for (size_t i = 0; i < x.size(); i += 97) x[i] *= 30.0f;  // outliers beyond 6σ
    return x;
}

TEST(ExternalSums, AdoptedMomentsGiveTheHookPathsStatistics) {
    const int64_t cols = 48;
    const std::vector<std::string> qkv{"blk.2.attn_q.weight", "blk.2.attn_k.weight",
                                       "blk.2.attn_v.weight"};
    ActivationCollector hooked, adopted;
    ChannelMoments sums(cols);
    uint32_t seed = 5;
    for (const int64_t rows : {3, 40, 17}) {
        const std::vector<float> x = random_rows(rows, cols, seed++);
        hooked.on_shared_input({HookEvent::Kind::LinearInput, 2, &qkv[0], -1, x.data(), rows, cols},
                               std::span<const std::string>(qkv).subspan(1));
        hooked.on_event({HookEvent::Kind::LayerOutput, 2, nullptr, -1, x.data(), rows, cols});
        sums.add(x.data(), rows);
    }
    ASSERT_GT(sums.n_beyond, 0);
    for (const std::string& name : qkv) adopted.adopt_moments(name, 2, sums);
    adopted.adopt_layer(hooked.layer_stats().at(0));
    // The head's input is not kept without include_output, as on_event decides.
    adopted.adopt_moments("output.weight", -1, sums);

    const auto a = adopted.tensor_stats(), h = hooked.tensor_stats();
    ASSERT_EQ(a.size(), 3u);
    ASSERT_EQ(h.size(), 3u);
    for (size_t i = 0; i < a.size(); ++i) {
        EXPECT_EQ(a[i].name, h[i].name);
        EXPECT_EQ(a[i].layer, 2);
        EXPECT_EQ(a[i].tokens, std::vector<int64_t>{60});
        EXPECT_EQ(a[i].tokens, h[i].tokens);
        EXPECT_EQ(a[i].importance, h[i].importance);
        EXPECT_EQ(a[i].mean_abs, h[i].mean_abs);
        EXPECT_EQ(a[i].max_abs, h[i].max_abs);
        EXPECT_EQ(a[i].outlier_channels, h[i].outlier_channels);
        EXPECT_EQ(a[i].frac_beyond_6sigma, h[i].frac_beyond_6sigma);
        EXPECT_GT(a[i].frac_beyond_6sigma, 0);
        EXPECT_EQ(a[i].excess_kurtosis, h[i].excess_kurtosis);
        EXPECT_EQ(a[i].variance, h[i].variance);
    }
    const auto ai = adopted.imatrix_entries(), hi = hooked.imatrix_entries();
    ASSERT_EQ(ai.size(), hi.size());
    for (size_t i = 0; i < ai.size(); ++i) {
        EXPECT_EQ(ai[i].values, hi[i].values);
        EXPECT_EQ(ai[i].counts, hi[i].counts);
    }
    const LayerHiddenStats l = adopted.layer_stats().at(0);
    EXPECT_EQ(l.n_tokens, 60);
    EXPECT_GT(l.max_abs, 0);
    // Adopting a tensor twice would double its sums silently: refused by name.
    try {
        adopted.adopt_moments(qkv[1], 2, sums);
        FAIL() << "a second adopt_moments was accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(qkv[1]), std::string::npos) << e.what();
    }
}

// Σ xᵀx of rows [rows, n] in double, upper triangle (what the GPU hands over).
std::vector<double> upper_xtx(const std::vector<float>& x, int64_t rows, int64_t n) {
    std::vector<double> h(static_cast<size_t>(n * n), 0.0);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t i = 0; i < n; ++i)
            for (int64_t j = i; j < n; ++j)
                h[static_cast<size_t>(i * n + j)] +=
                    static_cast<double>(x[r * n + i]) * x[r * n + j];
    return h;
}

TEST(ExternalSums, AddedHessiansEqualTheHookPaths) {
    const int64_t n = 24;
    const std::string down = "blk.0.ffn_down.weight", head = "output.weight";
    HessianCollector hooked, added, no_head(/*include_output=*/false);
    for (const int64_t rows : {5, 33}) {
        const std::vector<float> x = random_rows(rows, n, static_cast<uint32_t>(rows));
        hooked.on_event({HookEvent::Kind::LinearInput, 0, &down, -1, x.data(), rows, n});
        hooked.on_event({HookEvent::Kind::LinearInput, -1, &head, -1, x.data(), rows, n});
        const std::vector<double> u = upper_xtx(x, rows, n);
        added.add_sum(down, 0, n, rows, u.data());
        added.add_sum(head, -1, n, rows, u.data());
        no_head.add_sum(head, -1, n, rows, u.data());
        added.add_sum("blk.0.ffn_up.weight", 0, n, 0, u.data());  // no rows: nothing kept
    }
    EXPECT_EQ(added.matrices(), hooked.matrices());
    EXPECT_TRUE(no_head.empty());
    for (const auto& [name, expert] : hooked.matrices()) {
        EXPECT_EQ(added.tokens(name), 38) << name;
        EXPECT_EQ(added.n_cols(name), n) << name;
        const std::vector<double> a = added.hessian(name), h = hooked.hessian(name);
        for (size_t i = 0; i < h.size(); ++i)
            EXPECT_NEAR(a[i], h[i], 1e-12 * std::fabs(h[i]) + 1e-12);
        // Symmetric, the lower triangle mirrored from the upper.
        EXPECT_EQ(a[1 * n + 5], a[5 * n + 1]);
    }
    std::vector<double> wide(static_cast<size_t>(4 * n * n), 0.0);
    EXPECT_THROW(added.add_sum(down, 0, 2 * n, 1, wide.data()), Error);
}

}  // namespace
}  // namespace quantlens
