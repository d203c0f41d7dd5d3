// AWQ diagnostics: the round-to-nearest quantizer's grid; the scale search finds α > 0 and
// a lower output error when a few input channels carry large activations; on llama-8m's
// calibration activations the per-family table has every family and bit width; the weight
// diagnostics' definitions on a known tensor.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <random>
#include <string>

#include "analysis/studies/awq.h"
#include "analysis/studies/calibrate.h"
#include "analysis/studies/weight_diagnostics.h"
#include "engine/engine.h"
#include "model/model.h"
#include "support/analysis_options.h"
#include "support/test_data.h"

using namespace quantlens;

namespace {

using quantlens::test_support::shared_path;

}  // namespace

TEST(Awq, RtnGridKeepsGroupExtremesAndHasTwoToTheBitsLevels) {
    std::vector<float> w(256);
    for (size_t i = 0; i < w.size(); ++i) w[i] = std::sin(0.37f * static_cast<float>(i)) * (i % 7);
    std::vector<float> q(w.size());
    rtn_quantize(w.data(), q.data(), 2, 128, 3, 64);
    for (int g = 0; g < 4; ++g) {
        const auto b = w.begin() + g * 64, e = b + 64;
        const float lo = *std::min_element(b, e), hi = *std::max_element(b, e);
        std::vector<float> levels(q.begin() + g * 64, q.begin() + g * 64 + 64);
        std::sort(levels.begin(), levels.end());
        levels.erase(std::unique(levels.begin(), levels.end()), levels.end());
        EXPECT_LE(levels.size(), 8u);
        const float step = (hi - lo) / 7;
        for (int i = 0; i < 64; ++i) EXPECT_LE(std::fabs(q[g * 64 + i] - w[g * 64 + i]), step);
        EXPECT_NEAR(levels.front(), lo, step / 2);
        EXPECT_NEAR(levels.back(), hi, step / 2);
    }
    // Clipping at 0.5 halves the grid: values stay within it, up to the zero point's rounding
    // (half a step).
    rtn_quantize(w.data(), q.data(), 1, 256, 4, 256, 0.5);
    const float mx = *std::max_element(w.begin(), w.end());
    const float mn = *std::min_element(w.begin(), w.end());
    const float half_step = 0.5f * 0.5f * (mx - mn) / 15;
    for (float v : q) {
        EXPECT_LE(v, 0.5f * mx + half_step + 1e-5f);
        EXPECT_GE(v, 0.5f * mn - half_step - 1e-5f);
    }
}

TEST(Awq, ScaleSearchHelpsWhenFewChannelsCarryLargeActivations) {
    const int64_t R = 64, C = 256, N = 128;
    std::mt19937 rng(7);
    std::normal_distribution<float> gauss(0, 1);
    std::vector<float> w(R * C), x(N * C), mean_abs(C), max_abs(C);
    for (float& v : w) v = 0.05f * gauss(rng);
    for (int64_t i = 0; i < N; ++i)
        for (int64_t j = 0; j < C; ++j) x[i * C + j] = gauss(rng) * (j % 64 == 5 ? 30.0f : 1.0f);
    for (int64_t j = 0; j < C; ++j) {
        for (int64_t i = 0; i < N; ++i) {
            mean_abs[j] += std::fabs(x[i * C + j]) / N;
            max_abs[j] = std::max(max_abs[j], std::fabs(x[i * C + j]));
        }
    }
    AwqOptions o;
    const AwqTensor t = awq_diagnose("blk.0.ffn_down.weight", w.data(), R, C, x.data(), N,
                                     mean_abs.data(), max_abs.data(), o);
    EXPECT_EQ(t.family, "down");
    ASSERT_EQ(t.search.size(), 3u);
    for (const AwqSearch& s : t.search) {
        EXPECT_EQ(s.err_by_alpha.size(), 11u);
        EXPECT_GT(s.best_alpha, 0.0) << s.bits;
        EXPECT_LT(s.err_best, 0.9 * s.err_plain) << s.bits;
    }
    EXPECT_GT(t.search[0].err_plain, t.search[2].err_plain);  // 2 bits worse than 4
    // 4 of 256 channels (the top 1 % rounds up to 3) hold most of |W|·E|x|.
    EXPECT_GT(t.top1_share, 0.15);
    // SmoothQuant at α = 0.5 flattens the activation outliers.
    EXPECT_LT(t.sq_act_ratio_after, 0.5 * t.sq_act_ratio_before);
    // Smaller groups cost bits and lose less; the clip sweep ends at no clipping.
    ASSERT_EQ(t.group_study.size(), 4u);
    EXPECT_LT(t.group_study[0].rmse, t.group_study[3].rmse);
    EXPECT_DOUBLE_EQ(t.group_study[0].eff_bits, 5.0);
    EXPECT_DOUBLE_EQ(t.clip_sweep.back().ratio, 1.0);
}

TEST(Awq, Llama8mFamilyTableAtThreeBits) {
    const auto model = Model::open(shared_path("models/llama-8m"));
    Engine engine(*model);
    ActivationCollector col(0);
    CalibrateOptions co = test_support::quiet_calibration(512, 2);
    co.capture_rows = 128;
    co.capture_stride = 8;
    const CalibrationResult cal =
        calibrate_text(engine, shared_path("data/calib.txt"), co, {}, &col);
    AwqOptions o;
    o.bits = {3};
    o.group_sizes = {128};
    o.clip_ratios = {1.0};
    std::vector<AwqTensor> ts;
    for (const auto& s : cal.tensors) {
        const auto& x = col.captured(s.name);
        ASSERT_EQ(static_cast<int64_t>(x.size()), 128 * s.n_cols) << s.name;
        const auto& w = engine.original(s.name);
        ts.push_back(awq_diagnose(s.name, w.data(), static_cast<int64_t>(w.size()) / s.n_cols,
                                  s.n_cols, x.data(), 128, s.mean_abs.data(), s.max_abs.data(), o));
    }
    const auto fams = summarize_families(ts);
    ASSERT_EQ(fams.size(), 7u);
    const std::vector<std::string> order = {"q", "k", "v", "o", "gate", "up", "down"};
    for (size_t i = 0; i < fams.size(); ++i) {
        EXPECT_EQ(fams[i].family, order[i]);
        EXPECT_EQ(fams[i].n_tensors, 8);
        const double plain = fams[i].err_plain.at(3), best = fams[i].err_best.at(3);
        EXPECT_GT(plain, 0.01) << fams[i].family;  // 3-bit RTN is lossy everywhere
        EXPECT_LE(best, plain) << fams[i].family;  // α = 0 is in the grid
        std::printf("%-5s plain %.4f scaled %.4f reduction %5.1f %% best α %.2f top1 %.2f %%\n",
                    fams[i].family.c_str(), plain, best, 100 * fams[i].reduction.at(3),
                    fams[i].best_alpha.at(3), 100 * fams[i].top1_share);
    }
    // What AWQ's authors saw on large models holds here too: the inputs of o_proj and
    // down_proj (attention output, SwiGLU product) gain more from activation-aware scaling
    // than q/k, whose RMS-normalized inputs have flatter channels.
    const double q = fams[0].reduction.at(3), k = fams[1].reduction.at(3);
    const double o_ = fams[3].reduction.at(3), down = fams[6].reduction.at(3);
    EXPECT_GT(std::min(o_, down), std::max(q, k));
}

TEST(WeightDiagnostics, DefinitionsOnAKnownTensor) {
    // 1000 values: ±1 alternating plus one 20 → μ, σ and the outlier counts are known.
    std::vector<float> w(1000);
    for (size_t i = 0; i < w.size(); ++i) w[i] = i % 2 ? 1.0f : -1.0f;
    w[10] = 20.0f;  // was -1
    WeightDiagOptions o;
    const WeightDiagnostics d = diagnose_weight("t", w.data(), 4, 250, o);
    const double mu = 21.0 / 1000;
    const double var = (999.0 + 400.0) / 1000 - mu * mu;
    EXPECT_NEAR(d.mean, mu, 1e-12);
    EXPECT_NEAR(d.sigma, std::sqrt(var), 1e-9);
    EXPECT_EQ(d.n_outliers, 1);
    EXPECT_NEAR(d.max_outlier_sigma, (20 - mu) / std::sqrt(var), 1e-9);
    EXPECT_NEAR(d.range_ratio, 20 / (3 * std::sqrt(var)), 1e-9);
    EXPECT_NEAR(d.quant_waste, 1 - 1 / d.range_ratio, 1e-12);
    EXPECT_EQ(d.hist_counts.back(), 1);
    double m2 = 0, m4 = 0;
    for (float v : w) {
        m2 += (v - mu) * (v - mu) / 1000;
        m4 += std::pow(v - mu, 4) / 1000;
    }
    EXPECT_NEAR(d.excess_kurtosis, m4 / (m2 * m2) - 3, 1e-9);
    EXPECT_GT(d.excess_kurtosis, 70);  // one far outlier among ±1
}

TEST(WeightDiagnostics, GroupErrorMapsOnLlama8m) {
    const auto model = Model::open(shared_path("models/llama-8m"));
    const TensorInfo& t = model->get("blk.0.ffn_down.weight");
    const std::vector<float> w = model->read_f32(t);
    WeightDiagOptions o;
    o.type = GgmlType::Q4_K;
    const WeightDiagnostics d = diagnose_weight(t.name, w.data(), t.n_rows(), t.n_per_row(), o);
    ASSERT_EQ(d.groups.size(), 4u);
    for (const auto& g : d.groups) {
        EXPECT_EQ(g.n_groups, t.n_rows() * t.n_per_row() / g.group_size);
        EXPECT_GT(g.mean_rmse, 0);
        EXPECT_LE(g.mean_rmse, g.p99_rmse);
        EXPECT_LE(g.p99_rmse, g.worst_rmse);
    }
    // The worst 32-wide group cannot be better than the worst 256-wide group it sits in.
    EXPECT_GE(d.groups[0].worst_rmse, d.groups[3].worst_rmse);
    EXPECT_GT(d.excess_kurtosis, 0);  // trained weights are heavier-tailed than a Gaussian
}
