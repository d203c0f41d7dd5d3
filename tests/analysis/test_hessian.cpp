// Input Hessians (analysis/measure/hessian.h): H equals XᵀX computed directly from the captured
// input rows of a few weights (q and k share an input, so the reused product is checked
// too), the head's input is included, every token is a row; stacked experts get one H per
// expert with the tokens routed to it, or none when include_experts is off.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <map>
#include <string>

#include "analysis/measure/activation_stats.h"
#include "analysis/measure/chunks.h"
#include "analysis/measure/hessian.h"
#include "core/error.h"
#include "engine/engine.h"
#include "engine/tokenizer.h"
#include "model/model.h"
#include "support/test_data.h"

using namespace quantlens;

namespace {

using quantlens::test_support::shared_path;

// Sums in double of the same float products, in another order: agreement to 1e-12 relative.
constexpr double kSumRelTol = 1e-12;
// Activations of one token differ by float ulps between forward batches of other sizes.
constexpr double kBatchRelTol = 1e-5;

TEST(Hessian, EqualsXtXOfTheCapturedInputs) {
    const auto model = Model::open(shared_path("models/llama-8m"));
    Engine engine(*model);
    const EvalChunks chunks =
        load_eval_chunks(Tokenizer::load(*model), shared_path("data/calib.txt"), 64, 3);
    HessianCollector hc;
    std::map<std::string, std::vector<float>> rows;  // weight → captured rows (n, cols)
    const std::vector<std::string> watched = {"blk.0.attn_q.weight", "blk.0.attn_k.weight",
                                              "blk.3.ffn_down.weight", "output.weight"};
    engine.set_hook([&](const HookEvent& e) {
        hc.on_event(e);
        if (e.kind != HookEvent::Kind::LinearInput) return;
        for (const auto& w : watched)
            if (*e.tensor == w) rows[w].insert(rows[w].end(), e.data, e.data + e.rows * e.cols);
    });
    const int64_t T = chunks.n_ctx;
    for (int64_t c = 0; c < chunks.n_chunks; c += 2) {  // two forward batches: 2 + 1 chunks
        const int64_t B = std::min<int64_t>(2, chunks.n_chunks - c);
        std::vector<float> h = engine.embed(
            std::span<const int32_t>(chunks.tokens.data() + c * T, static_cast<size_t>(B * T)));
        for (int64_t l = 0; l < engine.n_layers(); ++l) engine.run_layer(l, h.data(), B, T);
        engine.head(h.data(), B, T, 0);
    }
    engine.clear_hook();
    // Every linear of the 8 layers (7 each) and the head.
    EXPECT_EQ(hc.matrices().size(), 8u * 7u + 1u);
    for (const auto& w : watched) {
        ASSERT_TRUE(hc.has(w)) << w;
        const int64_t n = hc.n_cols(w);
        const auto& x = rows[w];
        const int64_t N = static_cast<int64_t>(x.size()) / n;
        EXPECT_EQ(N, 3 * 64) << w;
        EXPECT_EQ(hc.tokens(w), N) << w;
        const std::vector<double> h = hc.hessian(w);
        ASSERT_EQ(static_cast<int64_t>(h.size()), n * n);
        double worst = 0;
        for (int64_t i = 0; i < n; ++i)
            for (int64_t j = 0; j < n; ++j) {
                double s = 0, a = 0;
                for (int64_t t = 0; t < N; ++t) {
                    const double p = static_cast<double>(x[static_cast<size_t>(t * n + i)]) *
                                     x[static_cast<size_t>(t * n + j)];
                    s += p;
                    a += std::fabs(p);
                }
                worst = std::max(
                    worst, std::fabs(h[static_cast<size_t>(i * n + j)] - s) / std::max(a, 1e-300));
            }
        EXPECT_LT(worst, kSumRelTol) << w;
    }
    EXPECT_THROW(hc.hessian("blk.99.attn_q.weight"), Error);
}

TEST(Hessian, RunHessiansCountsEveryTokenAndTheHead) {
    const auto model = Model::open(shared_path("models/llama-8m"));
    Engine engine(*model);
    const EvalChunks chunks =
        load_eval_chunks(Tokenizer::load(*model), shared_path("data/calib.txt"), 128, 3);
    HessianCollector hc(/*include_output=*/false);
    run_hessians(engine, chunks, hc, 2);
    EXPECT_FALSE(hc.has("output.weight"));
    EXPECT_EQ(hc.tokens("blk.7.ffn_up.weight"), 3 * 128);
    EXPECT_EQ(hc.n_cols("blk.7.ffn_down.weight"), 768);
    HessianCollector with_head;
    run_hessians(engine, chunks, with_head, 4);
    EXPECT_EQ(with_head.tokens("output.weight"), 3 * 128);
    // Batching changes only the engine's float rounding (sgemm blocking), not the sums.
    const auto a = hc.hessian("blk.2.attn_output.weight");
    const auto b = with_head.hessian("blk.2.attn_output.weight");
    for (size_t i = 0; i < a.size(); ++i)
        EXPECT_NEAR(a[i], b[i], kBatchRelTol * (std::fabs(a[i]) + 1)) << i;
}

TEST(Hessian, StackedExpertsPerExpertOrSkipped) {
    const auto model = Model::open(shared_path("models/tiny-moe"));
    Engine engine(*model);
    const EvalChunks chunks =
        load_eval_chunks(Tokenizer::load(*model), shared_path("data/calib.txt"), 64, 2);
    HessianCollector skip(true, false), per_expert(true, true);
    run_hessians(engine, chunks, skip);
    run_hessians(engine, chunks, per_expert);
    ActivationCollector ac(engine.config().n_experts);
    engine.set_hook(ac.hook());
    {
        const int64_t T = chunks.n_ctx;
        std::vector<float> h = engine.embed(std::span<const int32_t>(
            chunks.tokens.data(), static_cast<size_t>(chunks.n_chunks * T)));
        for (int64_t l = 0; l < engine.n_layers(); ++l)
            engine.run_layer(l, h.data(), chunks.n_chunks, T);
    }
    engine.clear_hook();
    int n_expert_mats = 0;
    for (const auto& [name, expert] : skip.matrices()) EXPECT_LT(expert, 0) << name;
    for (const auto& s : ac.tensor_stats()) {
        if (s.n_mat == 1) continue;
        int64_t total = 0;
        for (int64_t e = 0; e < s.n_mat; ++e) {
            EXPECT_EQ(per_expert.tokens(s.name, static_cast<int>(e)),
                      s.tokens[static_cast<size_t>(e)])
                << s.name << " expert " << e;
            total += per_expert.tokens(s.name, static_cast<int>(e));
            n_expert_mats += per_expert.has(s.name, static_cast<int>(e)) ? 1 : 0;
        }
        EXPECT_EQ(total, 2 * chunks.n_chunks * chunks.n_ctx) << s.name;  // top-2 routing
        EXPECT_FALSE(skip.has(s.name, 0));
    }
    EXPECT_GT(n_expert_mats, 0);
}

}  // namespace
