// EngineOptions::ggml_numerics reproduces llama.cpp's CPU forward pass bit for bit: the logits
// of llama-8m-Q4_K_M.gguf for 32 tokens equal, in every bit, those llama.cpp (c392e50,
// 2025-02, x86 AVX2/FMA build, one sequence of 32 tokens, F16 KV cache, no flash attention)
// wrote for the same tokens (tests/fixtures/ggml-numerics/README.md). Before engine/ggml_ops
// the matrix products were ggml's but norms, rope, attention and SwiGLU were not, and most
// logits differed in their last bits; on IQ2_XS/IQ2_XXS/TQ2_0 files that moved the PPL by
// 0.15–0.18 % (issue 28).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <vector>

#include "core/progress.h"
#include "engine/engine.h"
#include "engine/ggml_ops.h"
#include "model/model.h"
#include "support/test_data.h"

namespace quantlens {
namespace {

using test_support::shared_path;

struct LogitsGolden {
    int32_t n_tokens = 0, n_vocab = 0;
    std::vector<int32_t> rows, tokens;
    std::vector<float> logits;  // [rows.size(), n_vocab]
};

LogitsGolden read_golden(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    EXPECT_TRUE(in) << path;
    char magic[4] = {};
    int32_t n_rows = 0;
    LogitsGolden g;
    in.read(magic, 4);
    EXPECT_EQ(std::string(magic, 4), "QLLG");
    in.read(reinterpret_cast<char*>(&g.n_tokens), 4);
    in.read(reinterpret_cast<char*>(&g.n_vocab), 4);
    in.read(reinterpret_cast<char*>(&n_rows), 4);
    g.rows.resize(n_rows);
    g.tokens.resize(g.n_tokens);
    g.logits.resize(static_cast<size_t>(n_rows) * g.n_vocab);
    in.read(reinterpret_cast<char*>(g.rows.data()), 4 * n_rows);
    in.read(reinterpret_cast<char*>(g.tokens.data()), 4 * g.n_tokens);
    in.read(reinterpret_cast<char*>(g.logits.data()), 4 * g.logits.size());
    EXPECT_TRUE(in.good());
    return g;
}

void expect_logits_equal_llama_cpp(const std::string& model_name) {
    Progress::set_enabled(false);
    const LogitsGolden g = read_golden(
        std::string(QL_SOURCE_DIR) + "/tests/fixtures/ggml-numerics/" + model_name + ".logits.bin");
    ASSERT_EQ(g.n_tokens, 32);
    const auto model = Model::open(shared_path("models/" + model_name + ".gguf"));
    EngineOptions o;
    o.ggml_numerics = true;
    const Engine e(*model, o);
    ASSERT_EQ(e.vocab(), g.n_vocab);
    const std::vector<float> logits = e.forward(g.tokens, 1, g.n_tokens);
    size_t differing = 0;
    for (size_t i = 0; i < g.rows.size(); ++i) {
        const float* ours = logits.data() + static_cast<size_t>(g.rows[i]) * g.n_vocab;
        const float* theirs = g.logits.data() + i * g.n_vocab;
        for (int32_t v = 0; v < g.n_vocab; ++v)
            if (std::memcmp(ours + v, theirs + v, sizeof(float)) != 0) {
                if (differing++ == 0)
                    ADD_FAILURE() << "position " << g.rows[i] << " token " << v << ": " << ours[v]
                                  << " vs llama.cpp " << theirs[v];
            }
    }
    EXPECT_EQ(differing, 0u) << "of " << g.rows.size() * g.n_vocab << " logits";
}

TEST(GgmlNumerics, Q4KMLogitsEqualLlamaCppBitForBit) {
    expect_logits_equal_llama_cpp("llama-8m-Q4_K_M");
}

// Mixtral-style MoE: F32 router in tinyBLAS's order, ggml_soft_max, top-2 weights divided by
// their sum, expert outputs weighted and added in rank order.
TEST(GgmlNumerics, MoeQ4KMLogitsEqualLlamaCppBitForBit) {
    expect_logits_equal_llama_cpp("tiny-moe-Q4_K_M");
}

TEST(GgmlNumerics, ExpfLaneMatchesExpWithinTwoUlps) {
    EXPECT_EQ(expf_ggml(0.0f), 1.0f);
    EXPECT_EQ(expf_ggml(-std::numeric_limits<float>::infinity()), 0.0f);  // masked scores
    EXPECT_EQ(expf_ggml(-200.0f), 0.0f);
    EXPECT_EQ(expf_ggml(100.0f), std::numeric_limits<float>::infinity());
    // ~1.5 ulp (ggml's stated bound), also where the scale is split (|n| > 126).
    for (float x = -103.0f; x < 88.0f; x += 0.0137f) {
        const float ours = expf_ggml(x), ref = std::exp(x);
        EXPECT_LE(std::fabs(ours - ref), 2.0f * (std::nextafter(ref, INFINITY) - ref)) << x;
    }
}

TEST(GgmlNumerics, ExpfEightLanesEqualScalarTwin) {
    // Edge values (the split-scale path past |n| > 126 and > 192, ±inf, NaN) and a sweep.
    std::vector<float> x = {0.0f,
                            -0.0f,
                            1.0f,
                            -1.0f,
                            87.0f,
                            88.7f,
                            89.0f,
                            -87.5f,
                            -90.0f,
                            -100.0f,
                            -103.9f,
                            -104.0f,
                            -140.0f,
                            150.0f,
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN(),
                            1e-30f};
    for (float v = -150.0f; v < 100.0f; v += 0.0731f) x.push_back(v);
    while (x.size() % 8) x.push_back(0.5f);
    std::vector<float> y(x.size());
    for (size_t i = 0; i < x.size(); i += 8) expf_ggml8(x.data() + i, y.data() + i);
    for (size_t i = 0; i < x.size(); ++i) {
        const float ref = expf_ggml(x[i]);
        if (std::isnan(ref)) {
            EXPECT_TRUE(std::isnan(y[i])) << x[i];
        } else {
            EXPECT_EQ(std::memcmp(&y[i], &ref, 4), 0) << x[i] << ": " << y[i] << " vs " << ref;
        }
    }
}

}  // namespace
}  // namespace quantlens
