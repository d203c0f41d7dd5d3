// Weight-error metrics against hand-computed values, the imatrix reader against the
// llama.cpp imatrix of llama-8m, and run_weight_error on llama-8m itself.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "analysis/measure/weight_metrics.h"
#include "analysis/sweep/weight_error_sweep.h"
#include "core/error.h"
#include "core/mmap_file.h"
#include "formats/imatrix.h"
#include "model/model.h"
#include "quant/quant.h"
#include "support/test_data.h"

namespace quantlens {
namespace {

using quantlens::test_support::shared_dir;

TEST(WeightMetrics, MatchHandComputedValues) {
    // W = [[3, 4], [0, 0]], Ŵ = [[3, 3], [0, 1]]: E = [[0, 1], [0, -1]].
    const float w[] = {3, 4, 0, 0};
    const float wh[] = {3, 3, 0, 1};
    const float imp[] = {2, 5};
    const WeightError e = weight_error(w, wh, 2, 2, imp);
    EXPECT_EQ(e.n, 4);
    EXPECT_DOUBLE_EQ(e.rmse, std::sqrt(2.0 / 4));
    EXPECT_DOUBLE_EQ(e.max_abs, 1.0);
    EXPECT_DOUBLE_EQ(e.mean_abs, 0.5);
    EXPECT_DOUBLE_EQ(e.rel_frobenius, std::sqrt(2.0) / 5.0);
    EXPECT_DOUBLE_EQ(e.cosine, (9.0 + 12.0) / std::sqrt(25.0 * 19.0));
    EXPECT_DOUBLE_EQ(e.snr_db, 10.0 * std::log10(25.0 / 2.0));
    ASSERT_TRUE(e.has_imatrix);
    EXPECT_DOUBLE_EQ(e.imat_sq_err, 5.0 * (1 + 1));  // only column 1 has error
    EXPECT_DOUBLE_EQ(e.imat_rel_err, 10.0 / (2.0 * 9 + 5.0 * 16));
}

TEST(WeightMetrics, PerfectAndZeroCases) {
    const float w[] = {1, -2, 3, 0};
    const WeightError same = weight_error(w, w, 1, 4);
    EXPECT_EQ(same.rmse, 0.0);
    EXPECT_EQ(same.rel_frobenius, 0.0);
    EXPECT_DOUBLE_EQ(same.cosine, 1.0);
    EXPECT_TRUE(std::isinf(same.snr_db));
    EXPECT_FALSE(same.has_imatrix);
    const float z[] = {0, 0, 0, 0};
    EXPECT_DOUBLE_EQ(weight_error(z, z, 2, 2).cosine, 1.0);
    EXPECT_DOUBLE_EQ(weight_error(w, z, 2, 2).cosine, 0.0);
}

TEST(WeightMetrics, SplittingRowsGivesTheSameTotals) {
    std::vector<float> w(300 * 64), wh(w.size());
    for (size_t i = 0; i < w.size(); ++i) {
        w[i] = std::sin(0.1f * i);
        wh[i] = w[i] + 0.01f * std::cos(0.37f * i);
    }
    WeightErrorAccumulator a;
    a.add(w.data(), wh.data(), 100, 64);
    a.merge(WeightErrorAccumulator::of(w.data() + 6400, wh.data() + 6400, 200, 64));
    const WeightError whole = weight_error(w.data(), wh.data(), 300, 64);
    // Different partial sums in double: agreement to ~1e-12 relative, far below any
    // difference between quantization types.
    const double kSumOrderTolerance = 1e-12;
    EXPECT_NEAR(a.result().rmse / whole.rmse, 1.0, kSumOrderTolerance);
    EXPECT_NEAR(a.result().cosine, whole.cosine, kSumOrderTolerance);
    EXPECT_EQ(a.result().max_abs, whole.max_abs);
}

TEST(Imatrix, ReadsLlamaCppLegacyDat) {
    const Imatrix m = Imatrix::load(shared_dir() + "/data/llama-8m.llamacpp-imatrix.dat");
    EXPECT_EQ(m.entries().size(), 56u);  // 8 layers x 7 linear weights
    ASSERT_EQ(m.datasets().size(), 1u);
    EXPECT_EQ(m.datasets()[0], "calib.txt");
    const ImatrixEntry* e = m.find("blk.6.ffn_down.weight");
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->n_values, 768);
    ASSERT_EQ(e->counts, std::vector<int64_t>{384});
    EXPECT_FLOAT_EQ(e->values[0], 47.2533035f / 384);  // stored as mean x calls
    EXPECT_NE(m.importance("blk.6.ffn_down.weight", 768), nullptr);
    EXPECT_EQ(m.importance("token_embd.weight", 256), nullptr);
    try {
        m.importance("blk.6.ffn_down.weight", 256);
        FAIL() << "wrong length accepted";
    } catch (const Error& err) {
        EXPECT_NE(std::string(err.what()).find("blk.6.ffn_down.weight"), std::string::npos);
        EXPECT_NE(std::string(err.what()).find("768"), std::string::npos);
    }
}

TEST(Imatrix, RejectsTruncatedAndCorruptFiles) {
    MappedFile f(shared_dir() + "/data/llama-8m.llamacpp-imatrix.dat");
    const auto bytes = f.bytes();
    EXPECT_THROW(Imatrix::parse_legacy(bytes.subspan(0, 1000), "cut.dat"), Error);
    EXPECT_THROW(Imatrix::parse_legacy(bytes.subspan(0, 3), "tiny.dat"), Error);
    std::vector<uint8_t> bad(bytes.begin(), bytes.end());
    const int32_t huge = 0x7fffffff;
    std::memcpy(bad.data() + 4, &huge, 4);  // first name length
    EXPECT_THROW(Imatrix::parse_legacy(bad, "bad.dat"), Error);
}

// The whole weight-error sweep on llama-8m for two types, with the imatrix.
TEST(WeightErrorSweep, Llama8mQ4KAndQ8_0WithImatrix) {
    const auto model = Model::open(shared_dir() + "/models/llama-8m");
    const Imatrix imat = Imatrix::load(shared_dir() + "/data/llama-8m.llamacpp-imatrix.dat");
    const WeightErrorReport r = run_weight_error(*model, {GgmlType::Q4_K, GgmlType::Q8_0}, &imat);
    int64_t n_quantizable = 0;
    for (const auto& t : model->tensors()) n_quantizable += t.quantizable;
    ASSERT_EQ(r.rows.size(), static_cast<size_t>(2 * n_quantizable));
    ASSERT_EQ(r.totals.size(), 2u);
    EXPECT_DOUBLE_EQ(r.totals[0].bpw, 4.5);  // every llama-8m row is a multiple of 256
    EXPECT_DOUBLE_EQ(r.totals[1].bpw, 8.5);
    EXPECT_TRUE(r.totals[0].fallbacks.empty());
    // More bits, less error, on every tensor.
    for (size_t i = 0; i < r.rows.size(); i += 2) {
        EXPECT_GT(r.rows[i].error.rel_frobenius, r.rows[i + 1].error.rel_frobenius)
            << r.rows[i].tensor;
        EXPECT_GT(r.rows[i].error.cosine, 0.98) << r.rows[i].tensor;
    }
    EXPECT_GT(r.totals[0].error.rel_frobenius, 0.02);
    EXPECT_LT(r.totals[0].error.rel_frobenius, 0.2);
    EXPECT_LT(r.totals[1].error.rel_frobenius, 0.01);
    EXPECT_TRUE(r.totals[0].error.has_imatrix);  // some tensors have imatrix entries
}

// tiny-qwen2's 128- and 352-wide rows cannot hold Q4_K: llama.cpp substitutes Q5_0, and the
// report names every tensor that fell back.
TEST(WeightErrorSweep, ReportsFallbacksByTensorName) {
    const auto model = Model::open(shared_dir() + "/models/tiny-qwen2");
    const WeightErrorReport r = run_weight_error(*model, {GgmlType::Q4_K}, nullptr);
    ASSERT_FALSE(r.rows.empty());
    for (const auto& row : r.rows) {
        EXPECT_EQ(row.requested, GgmlType::Q4_K);
        EXPECT_EQ(row.used, GgmlType::Q5_0) << row.tensor;
    }
    ASSERT_EQ(r.totals[0].fallbacks.size(), r.rows.size());
    EXPECT_NE(r.totals[0].fallbacks[0].find(r.rows[0].tensor + ": Q4_K -> Q5_0"), std::string::npos)
        << r.totals[0].fallbacks[0];
    EXPECT_DOUBLE_EQ(r.totals[0].bpw, 5.5);
}

}  // namespace
}  // namespace quantlens
