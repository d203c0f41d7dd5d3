// gpt-oss end to end through the CLI: `quantlens eval` of the fixtures (tests/fixtures/gptoss
// in BF16, gptoss-mxfp4 with the released MXFP4 expert form) tokenizes eval.txt with the
// fixture's byte-level o200k-style tokenizer, reaches transformers' tokens (the base file
// refuses others) and its float64 log-probs (scripts/fixtures/make_gptoss_fixtures.py).
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include <nlohmann/json.hpp>

#include "support/cli_run.h"

namespace quantlens {
namespace {

struct GptOssFixture {
    const char* name;
    double transformers_ppl;  // scripts/fixtures/logs/make_gptoss_fixtures.log
};

class GptOssEndToEnd : public ::testing::TestWithParam<GptOssFixture> {};

TEST_P(GptOssEndToEnd, EvalMatchesTransformers) {
    const auto j = cli_testing::expect_fixture_eval_matches(GetParam().name);
    EXPECT_NEAR(j["ppl"].get<double>(), GetParam().transformers_ppl,
                1e-3 * GetParam().transformers_ppl);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GptOssEndToEnd,
                         ::testing::Values(GptOssFixture{"gptoss", 41.4431},
                                           GptOssFixture{"gptoss-mxfp4", 45.8278}),
                         [](const auto& info) {
                             return test_support::fixture_test_name(info.param.name);
                         });

}  // namespace
}  // namespace quantlens
