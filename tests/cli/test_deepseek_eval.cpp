// DeepSeek-V3 and GLM-4.5 end to end through the CLI: `quantlens eval` of the
// tests/fixtures/deepseek3-mla and glm4moe checkpoints (scripts/fixtures/
// make_deepseek_fixtures.py) tokenizes eval.txt with their DeepSeek-V3-style byte-level
// tokenizer, reaches the reference's tokens (the base file refuses others) and transformers'
// float64 log-probs; the GPU path refuses these families by name.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "support/cli_run.h"

namespace quantlens {
namespace {

TEST(DeepseekEval, MatchesTransformersThroughTheCli) {
    for (const char* f : {"deepseek3-mla", "glm4moe"}) {
        SCOPED_TRACE(f);
        const auto j = cli_testing::expect_fixture_eval_matches(f);
        std::printf("%s: eval KLD %.3g, PPL %.4f\n", f, j["kld"]["mean"].get<double>(),
                    j["ppl"].get<double>());
    }
}

}  // namespace
}  // namespace quantlens
