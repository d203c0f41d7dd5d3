// eval against llama.cpp's figures (docs/REFERENCE-FIGURES.md) and its conventions:
// chunking, KLD statistics, the base log-prob file, and bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "analysis/measure/eval.h"
#include "analysis/measure/kld.h"
#include "core/error.h"
#include "core/mmap_file.h"
#include "core/progress.h"
#include "engine/engine.h"
#include "engine/tokenizer.h"
#include "model/model.h"
#include "support/test_data.h"

namespace quantlens {
namespace {

using quantlens::test_support::shared_dir;

struct Fixture {
    std::unique_ptr<Model> model = Model::open(shared_dir() + "/models/llama-8m");
    Tokenizer tokenizer = Tokenizer::load(*model);
    std::string text = read_text_file(shared_dir() + "/data/eval.txt");
};

TEST(Eval, QuantilesInterpolateAtFractionTimesNMinusOne) {
    // 1..100: p99 sits at index 98.01 (99.01), p99.9 at 98.901 (99.901), the median at 49.5.
    std::vector<float> values;
    for (int i = 100; i >= 1; --i) values.push_back(static_cast<float>(i));  // unsorted
    const KldTails tails = kld_tails(values);
    EXPECT_NEAR(tails.p99, 99.01, 1e-9);
    EXPECT_NEAR(tails.p999, 99.901, 1e-9);
    std::sort(values.begin(), values.end());
    EXPECT_NEAR(sorted_quantile(values, 0.5), 50.5, 1e-12);
    EXPECT_EQ(sorted_quantile(values, 0.0), 1.0);
    EXPECT_EQ(sorted_quantile(values, 1.0), 100.0);
    EXPECT_EQ(kld_tails({}).p99, 0.0);
    // eval's accumulator takes the same quantiles.
    EvalAccumulator acc;
    for (const float v : values) acc.add(ScoredToken{1.0f, 1.0f, v, 0.0f, true});
    EXPECT_EQ(acc.kld().kld_p99, tails.p99);
    EXPECT_EQ(acc.kld().kld_p999, tails.p999);
}

TEST(Eval, ChunksFollowLlamaPerplexity) {
    Fixture f;
    EvalOptions o;
    o.n_ctx = 512;
    const EvalTokens e = make_eval_tokens(f.tokenizer, f.text, "eval.txt", o);
    const std::vector<int32_t> all = f.tokenizer.encode(f.text, true);
    EXPECT_EQ(e.n_chunks, static_cast<int64_t>(all.size()) / 512);
    EXPECT_GE(e.n_chunks, 100);  // llama.cpp ran 100 chunks of this text
    EXPECT_EQ(e.scored_per_chunk(), 255);
    for (int64_t c = 0; c < e.n_chunks; ++c) {
        ASSERT_EQ(e.tokens[c * 512], 0);
        ASSERT_EQ(e.tokens[c * 512 + 1], all[c * 512 + 1]);
    }
}

// llama.cpp, F16 GGUF of llama-8m, 100 chunks of 512: PPL 51.003. Acceptance: ±0.5 %.
// This is the full-size check (51,200 tokens); it takes ~20 s on 2 free cores.
constexpr double kLlamaCppF16Ppl = 51.003;
constexpr double kPplRelTol = 0.005;

TEST(Eval, PerplexityMatchesLlamaCpp) {
    Fixture f;
    Progress::set_enabled(false);
    EvalOptions o;
    o.max_chunks = 100;
    const EvalTokens e = make_eval_tokens(f.tokenizer, f.text, "eval.txt", o);
    EngineOptions eo;
    eo.f16_weights = true;  // llama.cpp measured the F16 conversion
    Engine engine(*f.model, eo);
    const EvalResult r = evaluate(engine, e, o);
    EXPECT_EQ(r.ppl.count, 100 * 255);
    EXPECT_NEAR(r.ppl.ppl, kLlamaCppF16Ppl, kPplRelTol * kLlamaCppF16Ppl);
    std::printf("PPL %.4f ± %.4f, %.0f tokens/s\n", r.ppl.ppl, r.ppl.ppl_err, r.tokens_per_second);
}

TEST(Eval, KldAgainstItselfIsZeroAndFileRoundTrips) {
    Fixture f;
    Progress::set_enabled(false);
    EvalOptions o;
    o.n_ctx = 128;
    o.max_chunks = 6;
    const EvalTokens e = make_eval_tokens(f.tokenizer, f.text, "eval.txt", o);
    Engine engine(*f.model);
    const std::string path = std::string(QL_TEST_TMP) + "/eval-base.qllogp";
    std::filesystem::create_directories(QL_TEST_TMP);
    std::filesystem::remove(path);  // --save-logits refuses an existing file
    const EvalResult self = evaluate(engine, e, o, {&engine, nullptr}, path);
    ASSERT_TRUE(self.kld);
    EXPECT_NEAR(self.kld->kld_mean, 0.0, 1e-6);
    EXPECT_EQ(self.kld->same_top, 1.0);
    EXPECT_NEAR(self.kld->ppl, self.kld->ppl_base, 1e-4 * self.ppl.ppl);

    // A quantized tensor against the base, once live and once from the saved file: the file
    // stores log-probs to ±1.9e-4 nats, so the statistics agree to well under 1 %.
    engine.override_with_type("blk.0.ffn_down.weight", GgmlType::Q4_0);
    const auto base_model = Model::open(shared_dir() + "/models/llama-8m");
    Engine base(*base_model);
    const LogitsFile file(path);
    EXPECT_EQ(file.header().n_chunks, 6u);
    const EvalResult live = evaluate(engine, e, o, {&base, nullptr});
    const EvalResult saved = evaluate(engine, e, o, {nullptr, &file});
    ASSERT_TRUE(live.kld && saved.kld);
    EXPECT_GT(live.kld->kld_mean, 1e-4);
    EXPECT_NEAR(saved.kld->kld_mean, live.kld->kld_mean, 0.01 * live.kld->kld_mean);
    EXPECT_NEAR(saved.kld->ppl_base, live.kld->ppl_base, 1e-4 * live.kld->ppl_base);
    EXPECT_NEAR(saved.kld->same_top, live.kld->same_top, 0.002);
    EXPECT_NEAR(saved.kld->rms_dp, live.kld->rms_dp, 0.01 * live.kld->rms_dp);
    EXPECT_LE(live.kld->kld_median, live.kld->kld_p90);
    EXPECT_LE(live.kld->kld_p90, live.kld->kld_p99);
    EXPECT_LE(live.kld->kld_p999, live.kld->kld_max);

    // The file names its tokens: another context or text is refused.
    EvalOptions other = o;
    other.n_ctx = 64;
    const EvalTokens e64 = make_eval_tokens(f.tokenizer, f.text, "eval.txt", other);
    EXPECT_THROW(evaluate(engine, e64, other, {nullptr, &file}), Error);
    const EvalTokens shifted = make_eval_tokens(f.tokenizer, f.text.substr(1000), "eval.txt", o);
    EXPECT_THROW(evaluate(engine, shifted, o, {nullptr, &file}), Error);
}

TEST(Eval, StatisticsFollowLlamaCppDefinitions) {
    // Hand-checkable: two scored tokens (target 0), vocabulary of 2.
    const float base_logits[2][2] = {{0.0f, 0.0f}, {std::log(3.0f), 0.0f}};
    const float q_logits[2][2] = {{std::log(3.0f), 0.0f}, {0.0f, std::log(3.0f)}};
    EvalAccumulator acc;
    for (int i = 0; i < 2; ++i) {
        float lp[2];
        const int64_t top = log_softmax_row(base_logits[i], 2, lp);
        acc.add(score_token(q_logits[i], lp, top, 2, 0));
    }
    const KldStats k = acc.kld();
    // Row 0: base (½, ½), q (¾, ¼): KL = ½ln(4/3), Δp = ¼, same top (tie → index 0).
    // Row 1: base (¾, ¼), q (¼, ¾): KL = ½ln3, Δp = −½, top differs.
    EXPECT_NEAR(k.kld_max, 0.5 * std::log(3.0), 1e-6);
    EXPECT_NEAR(k.kld_mean, 0.25 * std::log(4.0), 1e-6);
    EXPECT_NEAR(k.kld_median, 0.25 * std::log(4.0), 1e-6);  // interpolated between the two
    EXPECT_NEAR(k.rms_dp, std::sqrt(5.0 / 32.0), 1e-6);
    EXPECT_EQ(k.same_top, 0.5);
    EXPECT_NEAR(k.ppl, std::exp(0.5 * (std::log(4.0 / 3.0) + std::log(4.0))), 1e-5);
    EXPECT_NEAR(k.ppl_base, std::exp(0.5 * (std::log(2.0) + std::log(4.0 / 3.0))), 1e-5);
    EXPECT_NEAR(k.ln_ppl_ratio, std::log(k.ppl / k.ppl_base), 1e-6);
}

TEST(Eval, ShortTextIsAClearError) {
    Fixture f;
    EvalOptions o;
    o.n_ctx = 512;
    try {
        make_eval_tokens(f.tokenizer, f.text.substr(0, 2000), "short.txt", o);
        FAIL() << "expected Error";
    } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("short.txt"), std::string::npos) << msg;
        EXPECT_NE(msg.find("1024"), std::string::npos) << msg;
    }
}

TEST(Eval, CorruptLogitsFileIsAClearError) {
    std::filesystem::create_directories(QL_TEST_TMP);
    const std::string path = std::string(QL_TEST_TMP) + "/corrupt.qllogp";
    std::ofstream(path) << "QLLOGP";
    EXPECT_THROW(LogitsFile{path}, Error);
}

}  // namespace
}  // namespace quantlens
