// `quantlens verify` reuses a candidate file only when it was written from the same inputs:
// a recipe changed under the same name is quantized again (a stale file once made an
// acceptance run report the previous recipes' KLD), an unchanged one is not; no candidate is
// an error.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "support/cli_run.h"

namespace fs = std::filesystem;
using namespace quantlens::cli_testing;

namespace {

void write_recipe(const fs::path& p, const std::string& default_type) {
    std::ofstream(p) << R"({"format": "quantlens-recipe", "version": 1, "default_type": ")"
                     << default_type << R"(", "tensors": {}})";
}

double kld_of(const fs::path& json) {
    const auto j = nlohmann::json::parse(std::ifstream(json));
    return j.at("rows").at(0).at("kld_mean").get<double>();
}

}  // namespace

TEST(CliVerify, ReusesACandidateOnlyWhenItsRecipeIsUnchanged) {
    const fs::path dir = fresh_dir("cli-verify");
    const fs::path recipe = dir / "mix.json", out = dir / "files", json = dir / "v.json";
    const std::string cmd = "verify --base " + shared_path("models/llama-8m") + " --text " +
                            shared_path("data/eval.txt") + " --chunks 2 --presets '' --recipe " +
                            recipe.string() + " --out-dir " + out.string() + " --force --json " +
                            json.string();
    write_recipe(recipe, "Q8_0");
    Result r = run_quiet(cmd);
    ASSERT_EQ(r.code, 0) << r.out;
    const double q8 = kld_of(json);
    const auto written = fs::last_write_time(out / "mix.gguf");

    r = run_quiet(cmd);  // same recipe: the file is kept
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_EQ(fs::last_write_time(out / "mix.gguf"), written);
    EXPECT_EQ(kld_of(json), q8);

    write_recipe(recipe, "Q3_K");  // same name, other recipe: written again
    r = run_quiet(cmd);
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_GT(kld_of(json), 20 * q8) << "a stale Q8_0 file was measured";

    r = run_quiet("verify --base " + shared_path("models/llama-8m") + " --text " +
                  shared_path("data/eval.txt") + " --presets ''");
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.out.find("nothing to verify"), std::string::npos) << r.out;
}
