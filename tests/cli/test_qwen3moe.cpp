// Qwen3-MoE end to end through the binary, on tests/fixtures/qwen3moe (transformers 5.17's
// float64 log-probs over two chunks of 512 tokens of eval.txt,
// scripts/fixtures/make_qwen3moe_fixtures.py): eval tokenizes eval.txt with the fixture's
// byte-level tokenizer to the same ids (the base file refuses others) and reaches the same
// log-probs; sweep --experts stores one row per (layer, expert) and plan --tie ties them.
#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "support/cli_run.h"

namespace quantlens {
namespace {

using cli_testing::fresh_dir;
using cli_testing::run_quiet;
using cli_testing::shared_path;

std::string fixture() {
    return std::string(QL_SOURCE_DIR) + "/tests/fixtures/qwen3moe";
}

TEST(Qwen3MoeCli, EvalMatchesTransformers) {
    const auto j = cli_testing::expect_fixture_eval_matches("qwen3moe");
    // transformers' PPL over the same tokens (scripts/fixtures/logs/make_qwen3moe_fixtures.log).
    EXPECT_NEAR(j["ppl"].get<double>(), 38.7694, 1e-3) << j.dump(2);
}

TEST(Qwen3MoeCli, SweepExpertsThenPlanTie) {
    const std::string dir = fresh_dir("cli-qwen3moe");
    const std::string store = " --store " + dir + "/jobs.sqlite";
    const auto s =
        run_quiet("sweep " + fixture() + " --eval " + shared_path("data/eval.txt") +
                  " --tokens 128 --ctx 64 --types Q8_0,Q4_0 --experts --expert-sample 4" +
                  " --json " + dir + "/sweep.json" + store);
    ASSERT_EQ(s.code, 0) << s.out;
    EXPECT_NE(s.out.find("experts at Q4_0"), std::string::npos) << s.out;
    std::ifstream in(dir + "/sweep.json");
    const auto j = nlohmann::json::parse(in);
    std::set<std::string> expert_units;
    int share_rows = 0;
    for (const auto& m : j["measurements"]) {
        const std::string unit = m["unit"];
        if (unit.find(".expert.") == std::string::npos) continue;
        expert_units.insert(unit);
        share_rows += m["metric"] == "route_share";
    }
    EXPECT_EQ(expert_units.size(), 3u * 4u);  // 4 sampled experts in each of 3 layers
    EXPECT_EQ(share_rows, 3 * 4 * 2);         // one per (layer, expert, type)

    const auto p = run_quiet("plan 1 --target-bpw 6 --tie 'ffn_.*_exps'" + store, false);
    ASSERT_EQ(p.code, 0) << p.out;
    EXPECT_NE(p.out.find("blk.*.ffn_down_exps.weight"), std::string::npos) << p.out;
    EXPECT_EQ(p.out.find(".expert."), std::string::npos) << p.out;
    const auto bad = run_quiet("plan 1 --target-bpw 6 --tie nothing_matches" + store);
    EXPECT_NE(bad.code, 0);
    EXPECT_NE(bad.out.find("--tie 'nothing_matches'"), std::string::npos) << bad.out;
}

}  // namespace
}  // namespace quantlens
