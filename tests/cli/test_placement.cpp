// `quantlens sweep --placement` end to end: the built binary on llama-8m prints the size vs
// KLD table and writes it to --json; `jobs resume` of the finished job prints it again; bad
// option combinations end with one line naming the option and exit code 1.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "support/cli_run.h"

using ::testing::HasSubstr;
using namespace quantlens::cli_testing;

namespace {

std::string sweep_args(const std::string& dir) {
    return "sweep " + shared_dir() + "/models/llama-8m --eval " + shared_dir() +
           "/data/eval.txt --tokens 256 --ctx 128 --store " + dir + "/jobs.sqlite";
}

TEST(CliPlacement, PrintsTheTableAndWritesJson) {
    const std::string dir = fresh_dir("cli-placement-run");
    const Result r = run_cli(sweep_args(dir) + " --placement --base Q3_K --types Q6_K " +
                             "--placement-n 1 --json " + dir + "/out.json");
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_THAT(r.out, HasSubstr("placement study, base type Q3_K"));
    for (const char* v : {"(base)", "first-1", "last-1", "middle-1", "alternate", "attn-only",
                          "ffn-only", "output", "embed", "(all)"})
        EXPECT_THAT(r.out, HasSubstr(v));
    std::ifstream in(dir + "/out.json");
    const auto j = nlohmann::json::parse(in);
    ASSERT_EQ(j.at("placement").size(), 10u);  // (base), 8 variants, (all)
    EXPECT_EQ(j["placement"][0]["variant"], "(base)");
    EXPECT_EQ(j["placement"][0]["raised_type"], "Q3_K");
    EXPECT_EQ(j["placement"][9]["variant"], "(all)");
    EXPECT_GT(j["placement"][0]["kld_mean"].get<double>(),
              j["placement"][9]["kld_mean"].get<double>());

    // The job's parameters carry the placement: a resume knows what it was.
    const Result show = run_cli("jobs show 1 --store " + dir + "/jobs.sqlite");
    EXPECT_THAT(show.out, HasSubstr("\"base\":\"Q3_K\""));
}

TEST(CliPlacement, DefaultTypesAreTheOnesAboveTheBase) {
    const std::string dir = fresh_dir("cli-placement-defaults");
    // Base Q6_K: of the default types only Q8_0 has more bits.
    const Result r = run_cli(sweep_args(dir) + " --placement --base Q6_K --placement-n 1 --json -");
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_THAT(r.out, HasSubstr("first-1      Q8_0"));
    EXPECT_THAT(r.out, ::testing::Not(HasSubstr("Q5_K")));
}

TEST(CliPlacement, BadOptionsAreOneLineErrors) {
    const std::string dir = fresh_dir("cli-placement-bad");
    struct Case {
        std::string args, message;
    };
    for (const Case& c : std::vector<Case>{
             {"--placement --granularity layer",
              "--placement and --granularity layer are alternatives"},
             {"--placement --base Q9_K", "--base 'Q9_K' is not a quantization type"},
             {"--placement --placement-n 8", "--placement-n 8: must be between 1 and 7"},
             {"--placement --placement-n 1,x", "--placement-n '1,x': 'x' is not a layer count"},
             {"--placement --base Q4_K --types Q4_K,Q6_K", "contains the --base type Q4_K"},
             {"--base Q4_K", "--base and --placement-n belong to --placement"},
             {"--placement --base Q8_0", "no default type is above --base Q8_0"},
         }) {
        const Result r = run_cli(sweep_args(dir) + " " + c.args);
        EXPECT_EQ(r.code, 1) << c.args << "\n" << r.out;
        EXPECT_THAT(r.out, HasSubstr(c.message)) << c.args;
        EXPECT_LE(std::count(r.out.begin(), r.out.end(), '\n'), 2) << c.args << "\n" << r.out;
    }
}

}  // namespace
