// Llama-3.1-style rope scaling against transformers: tests/fixtures/llama31-rope holds a tiny
// trained LlamaForCausalLM with rope_type "llama3" (original context 64, so the scaling moves
// most frequencies within 512 tokens) and transformers' float64 log-probs over two chunks of
// eval.txt (scripts/fixtures/make_llama31_rope.py made it on a GPU machine). Without the
// scaling the same weights measure KLD ≈ 3 against that reference.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/mmap_file.h"
#include "support/cli_run.h"

namespace quantlens {
namespace {

namespace fs = std::filesystem;
using namespace cli_testing;

// Issue acceptance: mean KLD ≤ 1e-4 against transformers' float64 log-probs.
constexpr double kMaxMeanKld = 1e-4;

const std::string kFixture = std::string(QL_SOURCE_DIR) + "/tests/fixtures/llama31-rope";

nlohmann::json eval_against_reference(const std::string& model, const std::string& extra = "") {
    return cli_testing::eval_against(model, kFixture + "/reference.qllogp", extra);
}

// A copy of the fixture whose config.json is edited by `edit`.
std::string fixture_with_config(const std::string& dir,
                                const std::function<void(nlohmann::json&)>& edit) {
    for (const auto& e : fs::directory_iterator(kFixture))
        if (e.path().extension() != ".qllogp")
            fs::copy(e.path(), dir + "/" + e.path().filename().string());
    auto config = nlohmann::json::parse(read_text_file(kFixture + "/config.json"));
    edit(config);
    fs::remove(dir + "/config.json");
    std::ofstream(dir + "/config.json") << config.dump(2);
    return dir;
}

TEST(RopeScaling, Llama3MatchesTransformers) {
    const auto j = eval_against_reference(kFixture);
    EXPECT_LE(j["kld"]["mean"].get<double>(), kMaxMeanKld) << j.dump(2);
    EXPECT_GE(j["same_top1_pct"].get<double>(), 99.0);
}

TEST(RopeScaling, IgnoringTheScalingIsFarOff) {
    // What main did before: the rope_type was read past, giving default frequencies.
    const std::string dir = fixture_with_config(fresh_dir("rope-unscaled"), [](nlohmann::json& c) {
        c["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 500000.0}};
    });
    const auto j = eval_against_reference(dir);
    EXPECT_GT(j["kld"]["mean"].get<double>(), 0.5);
}

TEST(RopeScaling, V4RopeScalingKeyGivesTheSameLogits) {
    // transformers v4 configs: θ at the top, the scaling under "rope_scaling" with "type".
    const std::string dir = fixture_with_config(fresh_dir("rope-v4"), [](nlohmann::json& c) {
        nlohmann::json rp = c["rope_parameters"];
        c.erase("rope_parameters");
        c["rope_theta"] = rp["rope_theta"];
        rp.erase("rope_theta");
        rp.erase("rope_type");
        rp["type"] = "llama3";
        c["rope_scaling"] = rp;
    });
    const auto j = eval_against_reference(dir);
    EXPECT_LE(j["kld"]["mean"].get<double>(), kMaxMeanKld);
}

TEST(RopeScaling, GgufCarriesTheScalingAsRopeFreqs) {
    // llama.cpp's converter stores llama3 scaling as the tensor rope_freqs.weight; the F16
    // file we write must have it, and evaluating that file must rotate the same way.
    const std::string dir = fresh_dir("rope-gguf");
    const std::string out = dir + "/m.gguf";
    const auto q = run_quiet("quantize " + kFixture + " --preset F16 -o " + out);
    ASSERT_EQ(q.code, 0) << q.out;
    const auto inspect = run_quiet("inspect " + out + " --json", false);
    ASSERT_EQ(inspect.code, 0) << inspect.out;
    EXPECT_NE(inspect.out.find("rope_freqs.weight"), std::string::npos);
    const auto j = eval_against_reference(out);
    EXPECT_LE(j["kld"]["mean"].get<double>(), kMaxMeanKld);
}

}  // namespace
}  // namespace quantlens
