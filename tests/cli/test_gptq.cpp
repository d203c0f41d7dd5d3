// GPTQ's own formats end to end on llama-8m: `sweep --types …gptq…`, `plan --format gptq
// --target-size gptq4g128 --export-gptq`, `verify --format gptq`:
//  - the exported quantization_config passes the loader-rule validator
//    (tests/support/gptq_config_validator.h) and resolves every module to the planned format;
//  - the plan fits the size of uniform gptq4g128, whose checkpoint bytes are computed by hand;
//  - verify reports uniform gptq4g128 and gptq8g128 beside the plan, 8-bit far below 4-bit;
//  - a ggml plan's --export-gptq is refused naming a tensor and writes nothing; quantize
//    refuses a GPTQ recipe; an existing export file is kept without --force.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "formats/recipe.h"
#include "model/model.h"
#include "support/cli_run.h"
#include "support/gptq_config_validator.h"

namespace fs = std::filesystem;
using namespace quantlens::cli_testing;
using quantlens::test_support::check_gptq_config;
using quantlens::test_support::GptqModuleFormat;

namespace {

std::string slurp_text(const fs::path& p) {
    std::ifstream f(p);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// Uniform gptq4g128 on llama-8m, by hand (core/gptq_format.h's formula): per layer
// q, o (256 × 256): 32768 + 256 + 1024 + 1024 = 35072; k, v (128 × 256): 18048;
// gate, up (768 × 256): 103168; down (256 × 768, 6 groups): 98304 + 768 + 3072 + 3072 =
// 105216 → 417792 per layer, 3342336 for 8; kept in 16 bits: embedding and lm_head
// 2 × 4096 · 256 · 2 + 17 norms · 256 · 2 = 4203008.
constexpr uint64_t kUniform4g128Bytes = 3342336 + 4203008;

// " --store S" of a store in DIR holding job 1: three GPTQ formats on llama-8m, 128 tokens of
// calib.txt; "" if the sweep failed.
// The first ~1.9 kB of calib.txt (~650 tokens, whole lines): short enough that GPTQ's chunks,
// taken from its end, reach the windows a sweep or verify reads from its start.
std::string calibration_head(const fs::path& dir) {
    std::ifstream in(shared_path("data/calib.txt"));
    std::string text, line;
    while (text.size() < 1900 && std::getline(in, line)) text += line + "\n";
    const fs::path path = dir / "calib-head.txt";
    std::ofstream(path) << text;
    return path.string();
}

std::string three_format_store(const fs::path& dir) {
    const std::string store = " --store " + (dir / "s.sqlite").string();
    const Result r = run_quiet(
        "sweep " + shared_path("models/llama-8m") + " --eval " + shared_path("data/calib.txt") +
        " --tokens 128 --ctx 128 --types gptq4g128,gptq8g128,gptq3g128a" + store);
    EXPECT_EQ(r.code, 0) << r.out;
    return r.code == 0 ? store : "";
}

}  // namespace

TEST(CliGptq, SweepPlanExportVerify) {
    const fs::path dir = fresh_dir("cli-gptq");
    const std::string model = shared_path("models/llama-8m");
    const std::string store = three_format_store(dir);
    ASSERT_FALSE(store.empty());
    Result r;

    const fs::path recipe = dir / "r.json", cfg = dir / "cfg.json";
    r = run_quiet("plan 1 --format gptq --target-size gptq4g128 -o " + recipe.string() +
                  " --export-gptq " + cfg.string() + store);
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find(std::to_string(kUniform4g128Bytes) + " bytes"), std::string::npos)
        << r.out;
    const quantlens::Recipe plan = quantlens::load_recipe(recipe.string());
    ASSERT_TRUE(plan.is_gptq());
    EXPECT_LE(plan.predicted_size_bytes, kUniform4g128Bytes);
    EXPECT_EQ(plan.gptq_tensors.size(), 56u);  // 7 Linears × 8 layers

    // The config against the loaders' rules, module by module.
    auto m = quantlens::Model::open(model);
    std::vector<std::string> modules;
    std::map<std::string, GptqModuleFormat> expected;
    std::map<std::string, std::vector<std::string>> fused;
    for (const auto& t : m->tensors()) {
        const std::string mod = t.hf_name.substr(0, t.hf_name.rfind('.'));
        modules.push_back(mod);
        if (plan.gptq_tensors.count(t.name)) {
            const auto f = plan.gptq_tensors.at(t.name);
            expected[mod] = {f.bits, f.group, f.sym};
        }
        const std::string leaf = mod.substr(mod.rfind('.') + 1),
                          parent = mod.substr(0, mod.rfind('.') + 1);
        if (leaf == "q_proj" || leaf == "k_proj" || leaf == "v_proj")
            fused[parent + "qkv_proj"].push_back(mod);
        if (leaf == "gate_proj" || leaf == "up_proj") fused[parent + "gate_up_proj"].push_back(mod);
    }
    EXPECT_EQ(check_gptq_config(slurp_text(cfg), modules, fused, &expected), "") << slurp_text(cfg);

    // An existing export is kept without --force.
    std::ofstream(dir / "keep.json") << "precious";
    r = run_quiet("plan 1 --format gptq --target-size gptq4g128 --export-gptq " +
                  (dir / "keep.json").string() + store);
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_EQ(slurp_text(dir / "keep.json"), "precious");

    const fs::path vjson = dir / "v.json";
    r = run_quiet("verify --format gptq --base " + model + " --text " +
                  shared_path("data/eval.txt") + " --ctx 128 --chunks 2 --recipe " +
                  recipe.string() + " --out-dir " + (dir / "v").string() + " --json " +
                  vjson.string() + store);  // the recipe's sweep job is in this store
    ASSERT_EQ(r.code, 0) << r.out;
    const auto v = nlohmann::json::parse(std::ifstream(vjson));
    ASSERT_EQ(v["rows"].size(), 3u);
    EXPECT_EQ(v["rows"][1]["name"], "uniform gptq4g128");
    EXPECT_EQ(v["rows"][1]["size_bytes"].get<uint64_t>(), kUniform4g128Bytes);
    EXPECT_EQ(v["rows"][0]["size_bytes"].get<uint64_t>(), plan.predicted_size_bytes);
    EXPECT_LT(10 * v["rows"][2]["kld_mean"].get<double>(), v["rows"][1]["kld_mean"].get<double>());
    for (const auto& row : v["rows"])
        EXPECT_LE(row["kld_mean"].get<double>(), row["kld_p999"].get<double>() + 1e-12);

    // quantize does not write a GPTQ recipe as GGUF.
    r = run_quiet("quantize " + model + " --recipe " + recipe.string() + " -o " +
                  (dir / "x.gguf").string());
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.out.find("GPTQ recipe"), std::string::npos) << r.out;
}

TEST(CliGptq, GgmlPlanExportIsRefusedByTensorName) {
    const fs::path dir = fresh_dir("cli-gptq-ggml");
    const std::string store = " --store " + (dir / "s.sqlite").string();
    Result r = run_quiet(
        "sweep " + shared_path("models/llama-8m") + " --eval " + shared_path("data/calib.txt") +
        " --tokens 128 --ctx 128 --types Q6_K --granularity class --no-uniform" + store);
    ASSERT_EQ(r.code, 0) << r.out;
    r = run_quiet("plan 1 --target-bpw 8 --export-gptq " + (dir / "g.json").string() + store);
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.out.find("Q6_K, which GPTQ cannot store"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("tensor '"), std::string::npos) << r.out;
    EXPECT_FALSE(fs::exists(dir / "g.json"));
}

// plan --format gptq --refine / --interactions: the recipe's prediction is its mix measured on
// the sweep's tokens, which verify on those same tokens measures through its own fake
// quantization (not the sweep's item code); the refined recipe stays within the budget, a
// re-plan measures nothing, and a p99-objective plan refuses --refine by name. verify warns
// when its --gptq Hessians come from the text it verifies.
TEST(CliGptq, RefinedPlanPredictsWhatVerifyMeasuresOnTheSweepsTokens) {
    const fs::path dir = fresh_dir("cli-gptq-refine");
    const std::string model = shared_path("models/llama-8m");
    const std::string store = three_format_store(dir);
    ASSERT_FALSE(store.empty());
    Result r;
    const fs::path recipe = dir / "r.json";
    const std::string plan =
        "plan 1 --format gptq --target-size gptq4g128 --refine 1 "
        "--interactions 4 --json" +
        store;
    r = run_quiet(plan + " -o " + recipe.string());
    ASSERT_EQ(r.code, 0) << r.out;
    const quantlens::Recipe rec = quantlens::load_recipe(recipe.string());
    EXPECT_LE(rec.predicted_size_bytes, kUniform4g128Bytes);
    bool noted = false;
    for (const auto& n : rec.notes) noted = noted || n.find("refined by measured mixes") == 0;
    EXPECT_TRUE(noted);
    ASSERT_TRUE(std::isfinite(rec.predicted_kld_p99));

    r = run_quiet(plan);  // everything from the store: the same prediction
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_NEAR(nlohmann::json::parse(r.out.substr(r.out.find('{')))["predicted_kld"].get<double>(),
                rec.predicted_kld, 1e-15);

    const fs::path vjson = dir / "v.json";
    r = run_quiet("verify --format gptq --base " + model + " --text " +
                  shared_path("data/calib.txt") +
                  " --ctx 128 --chunks 1 --allow-overlap --recipe " + recipe.string() +
                  " --out-dir " + (dir / "v").string() + " --json " + vjson.string() + store);
    ASSERT_EQ(r.code, 0) << r.out;
    const auto v = nlohmann::json::parse(std::ifstream(vjson));
    const double measured = v["rows"][0]["kld_mean"].get<double>();
    EXPECT_NEAR(measured, rec.predicted_kld, 1e-3 * measured);
    EXPECT_NEAR(v["rows"][0]["kld_p99"].get<double>(), rec.predicted_kld_p99,
                1e-3 * rec.predicted_kld_p99);
    EXPECT_EQ(r.out.find("fit GPTQ"), std::string::npos) << r.out;  // no --gptq here

    // With GPTQ Hessians of the verified text itself, verify says so: a text short enough that
    // the chunk GPTQ fits at its end reaches the windows verify reads from its start.
    const std::string head = calibration_head(dir);
    r = run_quiet("verify --format gptq --base " + model + " --text " + head +
                  " --ctx 128 --chunks 4 --allow-overlap --gptq " + head +
                  " --gptq-chunks 2 --recipe " + recipe.string() + " --out-dir " +
                  (dir / "v2").string() + store);
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("of the 4 windows of"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("(its last 1 × 512 tokens fit GPTQ's rounding)"), std::string::npos)
        << r.out;

    r = run_quiet("sweep " + model + " --eval " + shared_path("data/calib.txt") +
                  " --tokens 128 --ctx 128 --types Q4_K,Q6_K --no-uniform" + store);
    ASSERT_EQ(r.code, 0) << r.out;
    r = run_quiet("plan 2 --target-bpw 5 --objective p99 --refine 1" + store);
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.out.find("--objective mean"), std::string::npos) << r.out;
}

// GPTQ fits the END of its text (--gptq-chunks from the last whole chunk back), so a sweep of
// the same long file, which reads it from the start, measures text the rounding never saw and
// says nothing; on a file too short to hold both, the sweep warns (its items are optimistic).
TEST(CliGptq, GptqFitsTheEndOfItsTextAndSweepWarnsWhereTheyMeet) {
    const fs::path dir = fresh_dir("cli-gptq-overlap");
    const std::string store = " --store " + (dir / "s.sqlite").string();
    const std::string sweep =
        "sweep " + shared_path("models/llama-8m") +
        " --tokens 256 --ctx 128 --types gptq4g128 --no-uniform --gptq-chunks 4";
    const std::string calib = shared_path("data/calib.txt");
    Result r = run_quiet(sweep + " --gptq " + calib + " --eval " + calib + store);
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_EQ(r.out.find("share text"), std::string::npos) << r.out;
    const std::string head = calibration_head(dir);
    r = run_quiet(sweep + " --gptq " + head + " --eval " + head + store);
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("of the 2 windows this sweep measures share text with --gptq " + head +
                         " (its last 4 × 128 tokens"),
              std::string::npos)
        << r.out;
}
