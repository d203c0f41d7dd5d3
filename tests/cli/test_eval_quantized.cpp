// `quantlens eval --ggml-numerics` of a quantized GGUF runs in its quantized form and says
// how much memory it took: tiny-qwen2's Q4_K_M (its 128- and 352-wide rows fall back to
// Q5_0 and Q8_0, so the legacy Q8_0 activation path runs in the engine) agrees with the
// float evaluation of the same file, and the JSON reports a plausible peak RSS (above the
// file size, below it plus the process's fixed cost). The memory bar itself is measured on a
// 717 M-parameter model (README), too big for a test.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "support/cli_run.h"

namespace fs = std::filesystem;
using namespace quantlens::cli_testing;

namespace {

// Same weights, activations rounded to 8 bits (ggml) or not (float path): over 4 chunks of
// 256 the perplexities of this Q4_K_M file differ by 0.08 %; 0.5 % would be a real error.
constexpr double kPplRelTol = 0.005;
// The binary, its libraries and the eval buffers of a 4096-word vocabulary take ~45 MB
// whatever the model.
constexpr double kFixedCostBytes = 80e6;

nlohmann::json eval_json(const std::string& model, const std::string& flags) {
    const Result r = run_quiet("eval " + model + " --text " + shared_path("data/eval.txt") +
                                   " --ctx 256 --chunks 4 --json " + flags,
                               false);
    EXPECT_EQ(r.code, 0) << r.out;
    return nlohmann::json::parse(r.out);
}

// tiny-qwen2 quantized with PRESET into a fresh directory; the command's summary in *SUMMARY.
std::string quantized_tiny_qwen2(const std::string& preset, std::string* summary = nullptr) {
    const std::string gguf = fresh_dir("cli-eval-quantized") + "/tiny-qwen2-" + preset + ".gguf";
    const Result q = run_quiet("quantize " + shared_path("models/tiny-qwen2") + " --preset " +
                               preset + " --summary -o " + gguf);
    EXPECT_EQ(q.code, 0) << q.out;
    if (summary) *summary = q.out;
    return gguf;
}

}  // namespace

TEST(CliEvalQuantized, TinyQwen2Q4KMInItsQuantizedForm) {
    std::string summary;
    const std::string gguf = quantized_tiny_qwen2("Q4_K_M", &summary);
    ASSERT_NE(summary.find("Q5_0"), std::string::npos) << summary;  // the fallbacks are there

    const nlohmann::json ggml = eval_json(gguf, "--ggml-numerics");
    const nlohmann::json plain = eval_json(gguf, "");
    const double ppl = ggml.at("ppl").get<double>(), ref = plain.at("ppl").get<double>();
    EXPECT_NEAR(ppl, ref, kPplRelTol * ref);
    EXPECT_NE(ppl, ref);  // the 8-bit activations are really there
    const double rss = ggml.at("peak_rss_bytes").get<double>();
    EXPECT_GT(rss, static_cast<double>(fs::file_size(gguf)));
    EXPECT_LT(rss, kFixedCostBytes + static_cast<double>(fs::file_size(gguf)));
}

// An F16 GGUF is multiplied as stored (F16 weights, activations rounded to F16, ggml's F16
// dot) instead of through an f32 copy: same perplexity as the float path to rounding.
constexpr double kF16PplRelTol = 0.001;

TEST(CliEvalQuantized, F16WeightsStayF16) {
    const std::string gguf = quantized_tiny_qwen2("F16");
    const double ppl = eval_json(gguf, "--ggml-numerics").at("ppl").get<double>();
    const double ref = eval_json(gguf, "").at("ppl").get<double>();
    EXPECT_NEAR(ppl, ref, kF16PplRelTol * ref);
}
