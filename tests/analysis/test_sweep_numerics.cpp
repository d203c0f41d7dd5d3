// `sweep --ggml-numerics`: an item is measured with llama.cpp's CPU rounding of each matmul
// input for the item's type, so the sweep's ΔKLD is what verify measures for a quantized file.
// Checked on llama-8m (4 chunks of 128 of eval.txt) against an independent computation: two
// engines with ggml numerics, every quantizable tensor fake-quantized to the type, evaluated
// with eval's KLD.
#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "analysis/measure/eval.h"
#include "analysis/sweep/sweep.h"
#include "core/mmap_file.h"
#include "core/progress.h"
#include "engine/engine.h"
#include "engine/tokenizer.h"
#include "model/model.h"
#include "support/analysis_options.h"
#include "support/test_data.h"

namespace quantlens {
namespace {

using quantlens::test_support::shared_dir;

SweepOptions options(bool ggml_numerics) {
    SweepOptions o = test_support::eval_sweep(shared_dir() + "/models/llama-8m", 512, 128,
                                              {GgmlType::Q4_K, GgmlType::Q8_0});
    o.ggml_numerics = ggml_numerics;
    return o;
}

// KLD statistics of the model with every quantizable tensor at `type`, computed outside the
// sweep.
KldStats uniform_kld_stats_by_eval(GgmlType type) {
    const auto model = Model::open(shared_dir() + "/models/llama-8m");
    EngineOptions eo;
    eo.f16_weights = true;
    eo.ggml_numerics = true;
    Engine base(*model, eo), quant(*model, eo);
    for (const auto& t : model->tensors())
        if (t.quantizable) quant.override_with_type(t.name, type);
    EvalOptions o;
    o.n_ctx = 128;
    o.max_chunks = 4;
    o.progress = false;
    const EvalTokens chunks = make_eval_tokens(
        Tokenizer::load(*model), read_text_file(shared_dir() + "/data/eval.txt"), "eval.txt", o);
    const EvalResult r = evaluate(quant, chunks, o, {&base, nullptr});
    return *r.kld;
}

double uniform_kld_by_eval(GgmlType type) {
    return uniform_kld_stats_by_eval(type).kld_mean;
}

TEST(SweepNumerics, UniformItemEqualsEvalWithGgmlNumerics) {
    Progress::set_enabled(false);
    SweepMeasurer m(options(true));
    m.prepare();
    for (GgmlType type : {GgmlType::Q4_K, GgmlType::Q8_0}) {
        SCOPED_TRACE(ggml_type_display_name(type));
        const double swept = m.measure("(all)", ggml_type_display_name(type)).at("kld_mean");
        const double reference = uniform_kld_by_eval(type);
        EXPECT_NEAR(swept, reference, 1e-4 * reference);
    }
}

TEST(SweepNumerics, ItemTailsEqualEvalsTails) {
    // The sweep's per-item p99 and p99.9 KLD (jobs/metric_names.h) are eval's quantiles of the
    // same per-token KLD: checked on the "(all)" item against two engines and eval.
    Progress::set_enabled(false);
    SweepMeasurer m(options(true));
    m.prepare();
    const auto swept = m.measure("(all)", "Q4_K");
    const KldStats reference = uniform_kld_stats_by_eval(GgmlType::Q4_K);
    EXPECT_NEAR(swept.at("kld_p99"), reference.kld_p99, 1e-4 * reference.kld_p99);
    EXPECT_NEAR(swept.at("kld_p999"), reference.kld_p999, 1e-4 * reference.kld_p999);
    // A tail sits above the mean and at most at the largest token.
    EXPECT_GT(swept.at("kld_p99"), 2 * swept.at("kld_mean"));
    EXPECT_LE(swept.at("kld_p999"), swept.at("kld_max"));
    // Identical weights record zero tails like every other KLD figure.
    const auto f16 = m.measure("blk.0.attn_v.weight", "F16");
    EXPECT_EQ(f16.at("kld_p99"), 0.0);
    EXPECT_EQ(f16.at("kld_p999"), 0.0);
}

TEST(SweepNumerics, ActivationRoundingShowsAtEightBits) {
    // At Q8_0 the weights barely move; llama.cpp's 8-bit rounding of the matmul inputs is most
    // of the error (REFERENCE-FIGURES: Q8_0 KLD 0.000399), which pure f32 compute misses.
    Progress::set_enabled(false);
    SweepMeasurer f32(options(false)), ggml(options(true));
    f32.prepare();
    ggml.prepare();
    const double kld_f32 = f32.measure("(all)", "Q8_0").at("kld_mean");
    const double kld_ggml = ggml.measure("(all)", "Q8_0").at("kld_mean");
    EXPECT_GT(kld_ggml, 1.8 * kld_f32);
    // One tensor at Q8_0 whose values come back unchanged would still round its input: the
    // item is measured, never skipped as "identical bytes".
    EXPECT_GT(ggml.measure("blk.0.attn_v.weight", "Q8_0").at("kld_mean"), 0.0);
    // F16 over F16-rounded weights is the base itself: nothing to round, KLD exactly 0, and
    // the storage a plan can choose for small sensitive tensors (attn_v: 256 × 128 × 2 bytes).
    const auto f16 = ggml.measure("blk.0.attn_v.weight", "F16");
    EXPECT_EQ(f16.at("kld_mean"), 0.0);
    EXPECT_EQ(f16.at("bytes"), 256.0 * 128 * 2);
}

TEST(SweepNumerics, EveryOptionSurvivesTheJobParameters) {
    // A job runs from its stored parameters (jobs resume too): an option missing from the JSON
    // silently changes what is measured.
    SweepOptions o = options(true);
    o.gpu = true;
    o.prefix_cache = false;
    o.uniform = false;
    o.f16_weights = false;
    o.imatrix = "/some/imatrix.dat";
    o.granularity = "layer";
    o.budget_seconds = 12.5;
    const SweepOptions back = SweepOptions::from_json(o.to_json());
    EXPECT_EQ(back.to_json(), o.to_json());
    EXPECT_TRUE(back.gpu);
    EXPECT_TRUE(back.ggml_numerics);
    EXPECT_FALSE(back.prefix_cache);
    EXPECT_FALSE(back.f16_weights);
    EXPECT_EQ(back.types, o.types);
    EXPECT_EQ(back.n_tokens, 512);
}

// llama.cpp's numerics run on the GPU too (tests/cuda: GgmlNumericsMatchCpuEngine); a build
// without CUDA refuses --gpu by name.
TEST(SweepNumerics, OnTheGpuNeedsACudaBuild) {
    SweepOptions o = options(true);
    o.gpu = true;
    SweepMeasurer m(o);
    try {
        m.prepare();
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("--gpu"), std::string::npos) << e.what();
        return;
    }
    GTEST_SKIP() << "a CUDA build with a device: the GPU sweep ran";
}

}  // namespace
}  // namespace quantlens
