// Qwen3-Next, Qwen3.5 and Qwen3.5-MoE end to end through the CLI: `eval` tokenizes eval.txt
// with the fixture's byte-level tokenizer (no BOS, as Qwen), runs the hybrid on the CPU and
// compares with transformers' float64 log-probs (tests/fixtures/<name>/reference.qllogp, made
// by scripts/fixtures/make_deltanet_fixtures.py; the base file refuses other tokens).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "support/cli_run.h"

namespace quantlens {
namespace {

struct Case {
    const char* fixture;
    double ppl;  // transformers' (scripts/fixtures/logs/make_deltanet_fixtures.log)
};

class DeltaNetModels : public ::testing::TestWithParam<Case> {};

TEST_P(DeltaNetModels, EvalMatchesTransformers) {
    const auto j = cli_testing::expect_fixture_eval_matches(GetParam().fixture);
    EXPECT_NEAR(j["ppl"].get<double>(), GetParam().ppl, 1e-3) << j.dump(2);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, DeltaNetModels,
                         ::testing::Values(Case{"qwen3-next", 39.6323}, Case{"qwen3.5", 36.2172},
                                           Case{"qwen3.5-moe", 37.8174}),
                         [](const auto& info) {
                             std::string n = info.param.fixture;
                             for (char& ch : n)
                                 if (ch == '-' || ch == '.') ch = '_';
                             return n;
                         });

}  // namespace
}  // namespace quantlens
