// run_verify on llama-8m, 2 chunks of eval.txt: our Q4_K_M preset file holds llama.cpp's tensor
// bytes, so it measures exactly what llama.cpp's own file measures; sizes and bpw are the
// files'; a recipe's predicted KLD travels to its row and presets have none; rows keep the
// candidates' order.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>

#include "analysis/studies/verify.h"
#include "core/error.h"
#include "formats/recipe.h"
#include "support/test_data.h"

namespace fs = std::filesystem;
using namespace quantlens;
using namespace quantlens::test_support;

namespace {

VerifyOptions options(const std::string& dir) {
    VerifyOptions o;
    o.base_model = shared_path("models/llama-8m");
    o.text = shared_path("data/eval.txt");
    o.out_dir = dir + "/files";
    o.chunks = 2;
    return o;
}

TEST(Verify, OurPresetFileMeasuresExactlyWhatLlamaCppsFileMeasures) {
    const std::string dir = fresh_dir("verify");
    const std::string recipe = dir + "/mix.json";
    put(recipe, R"({"format": "quantlens-recipe", "version": 1, "default_type": "Q6_K",
                    "predicted": {"kld": 0.00123}, "tensors": {"output.weight": "Q8_0"}})");
    const VerifyReport rep =
        run_verify(options(dir), {{"Q4_K_M", "", "", "Q4_K_M"},
                                  {"llama.cpp", shared_path("models/llama-8m-Q4_K_M.gguf"), "", ""},
                                  {"mix", "", recipe, ""}});
    ASSERT_EQ(rep.rows.size(), 3u);
    EXPECT_EQ(rep.rows[0].name, "Q4_K_M");
    EXPECT_EQ(rep.rows[1].name, "llama.cpp");
    EXPECT_EQ(rep.rows[2].name, "mix");
    EXPECT_EQ(rep.n_tokens, 2 * 512);
    EXPECT_GT(rep.base_ppl, 1.0);
    const VerifyRow &ours = rep.rows[0], &theirs = rep.rows[1], &mix = rep.rows[2];
    // Same tensors and tensor bytes; only free-text metadata (names) differs in length.
    EXPECT_EQ(theirs.size_bytes, fs::file_size(shared_path("models/llama-8m-Q4_K_M.gguf")));
    EXPECT_NEAR(static_cast<double>(ours.size_bytes), static_cast<double>(theirs.size_bytes), 256);
    EXPECT_EQ(ours.kld_mean, theirs.kld_mean);
    EXPECT_EQ(ours.ppl, theirs.ppl);
    EXPECT_GT(ours.kld_mean, 0.0);
    EXPECT_FALSE(ours.predicted_kld.has_value());
    EXPECT_FALSE(theirs.predicted_kld.has_value());
    ASSERT_TRUE(mix.predicted_kld.has_value());
    EXPECT_DOUBLE_EQ(*mix.predicted_kld, 0.00123);
    // Q6_K with a Q8_0 output is closer to the base than Q4_K_M, and larger.
    EXPECT_LT(mix.kld_mean, ours.kld_mean);
    EXPECT_GT(mix.size_bytes, ours.size_bytes);
    EXPECT_EQ(mix.size_bytes, fs::file_size(mix.path));
    EXPECT_TRUE(std::isfinite(mix.bpw) && mix.bpw > 6.0 && mix.bpw < 9.0) << mix.bpw;
    EXPECT_LE(mix.kld_median, mix.kld_p99);
    EXPECT_LE(mix.kld_p99, mix.kld_max);
}

TEST(Verify, NoCandidateIsAnError) {
    const std::string dir = fresh_dir("verify");
    EXPECT_THROW(run_verify(options(dir), {}), Error);
}

TEST(Verify, AMissingCandidateFileIsRefusedByName) {
    const std::string dir = fresh_dir("verify");
    try {
        run_verify(options(dir), {{"x", dir + "/absent.gguf", "", ""}});
        FAIL() << "expected an Error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("absent.gguf"), std::string::npos) << e.what();
    }
}

}  // namespace
