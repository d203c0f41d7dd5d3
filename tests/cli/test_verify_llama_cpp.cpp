// `verify --llama-cpp [DIR]`: llama.cpp's own llama-perplexity on every candidate, beside our
// figures. The agreement test runs only where the tool exists: in $QUANTLENS_LLAMA_CPP (a
// llama.cpp checkout or build folder: DIR, DIR/bin or DIR/build/bin) or on PATH; it is
// skipped otherwise. The refusal of a missing tool runs everywhere.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "analysis/studies/llama_cpp_check.h"
#include "support/cli_run.h"

namespace fs = std::filesystem;
using namespace quantlens::cli_testing;

namespace {

std::string verify_args(const fs::path& dir) {
    return "verify --base " + shared_path("models/llama-8m") + " --text " +
           shared_path("data/eval.txt") + " --ctx 128 --chunks 2 --presets Q4_K_M --out-dir " +
           (dir / "files").string();
}

// The summary llama-perplexity printed on llama-8m Q4_K_M (4 chunks of 128 of eval.txt).
constexpr const char* kSummary = R"(Mean PPL(Q)                   :  51.387803 ±  12.042127
Mean PPL(base)                :  50.567160 ±  11.846232
====== KL divergence statistics ======
Mean    KLD:   0.018135 ±   0.001221
Maximum KLD:   0.129726
99.9%   KLD:   0.126447
99.0%   KLD:   0.101562
99.0%   KLD:   0.101562
Median  KLD:   0.012349
10.0%   KLD:   0.002085
====== Token probability statistics ======
Mean    Δp: -0.269 ± 0.210 %
99.9%   Δp: 12.083%
RMS Δp    :  3.331 ± 0.355 %
Same top p: 90.873 ± 1.818 %
)";

}  // namespace

TEST(VerifyLlamaCpp, ReadsLlamaPerplexitysSummary) {
    const auto f = quantlens::parse_llama_perplexity_output(kSummary, "q.log");
    EXPECT_DOUBLE_EQ(f.ppl, 51.387803);
    EXPECT_DOUBLE_EQ(f.ppl_err, 12.042127);
    EXPECT_DOUBLE_EQ(f.kld_mean, 0.018135);
    EXPECT_DOUBLE_EQ(f.kld_err, 0.001221);
    EXPECT_DOUBLE_EQ(f.kld_median, 0.012349);
    EXPECT_DOUBLE_EQ(f.kld_p99, 0.101562);
    EXPECT_DOUBLE_EQ(f.kld_p999, 0.126447);
    EXPECT_DOUBLE_EQ(f.kld_max, 0.129726);
    EXPECT_DOUBLE_EQ(f.top1, 0.90873);
    std::string cut = kSummary;
    const size_t line = cut.find("99.9%   KLD");
    cut.erase(line, cut.find('\n', line) + 1 - line);
    try {
        quantlens::parse_llama_perplexity_output(cut, "q.log");
        FAIL() << "a summary without its p99.9 line was read";
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("q.log"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("99.9% KLD"), std::string::npos) << e.what();
    }
}

// A summary whose figures are not numbers ("-", "nan", an overflow) is refused naming the log,
// never read as 0 or passed on as NaN.
TEST(VerifyLlamaCpp, CorruptFiguresAreRefusedNamingTheLog) {
    for (const char* bad : {"-", "nan", "1e999", "1.2.3"}) {
        std::string text = kSummary;
        const size_t at = text.find("Mean    KLD:");
        ASSERT_NE(at, std::string::npos);
        const size_t value = text.find_first_of("0123456789", at);
        const size_t stop = text.find_first_of(" \n", value);
        text.replace(value, stop - value, bad);
        try {
            quantlens::parse_llama_perplexity_output(text, "bad.log");
            FAIL() << "read a summary with Mean KLD " << bad;
        } catch (const std::exception& e) {
            EXPECT_NE(std::string(e.what()).find("bad.log"), std::string::npos) << e.what();
        }
    }
}

TEST(VerifyLlamaCpp, AMissingToolIsRefusedByName) {
    const fs::path dir = fresh_dir("cli-verify-llama");
    const Result r = run_quiet(verify_args(dir) + " --llama-cpp " + (dir / "nowhere").string());
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.out.find("llama-perplexity is not in " + (dir / "nowhere").string()),
              std::string::npos)
        << r.out;
    EXPECT_FALSE(fs::exists(dir / "files" / "Q4_K_M.gguf")) << "refused after work began";
}

TEST(VerifyLlamaCpp, AgreesWithOursOnTheSameWindows) {
    const char* env = std::getenv("QUANTLENS_LLAMA_CPP");
    const std::string where = env ? env : "";
    if (!quantlens::find_llama_perplexity(where))
        GTEST_SKIP() << "llama-perplexity is not " << (where.empty() ? "on PATH" : "in " + where)
                     << " (set QUANTLENS_LLAMA_CPP to a llama.cpp build folder)";
    const fs::path dir = fresh_dir("cli-verify-llama");
    const fs::path json = dir / "v.json";
    const Result r = run_quiet(verify_args(dir) + " --llama-cpp " + where + " --json " +
                               json.string() + " --force");
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("llama.cpp ("), std::string::npos) << r.out;
    const auto j = nlohmann::json::parse(std::ifstream(json));
    ASSERT_TRUE(j.contains("llama_cpp")) << j.dump(1);
    const auto& row = j.at("rows").at(0);
    ASSERT_TRUE(row.contains("llama_cpp")) << row.dump(1);
    const auto& l = row.at("llama_cpp");
    // Both evaluate llama.cpp's arithmetic (ours emulated) on the same 126 scored tokens of the
    // same file. Measured on llama-8m Q4_K_M (the project VM's llama.cpp CPU build): PPL 55.335 vs
    // ours 55.566, mean KLD 0.022384 vs 0.022627 (−1.1 %), p99 0.11331 vs 0.11387. The bounds
    // leave room for llama.cpp builds whose kernels round differently.
    EXPECT_NEAR(l.at("ppl").get<double>() / row.at("ppl").get<double>(), 1.0, 0.01);
    EXPECT_NEAR(l.at("kld_mean").get<double>() / row.at("kld_mean").get<double>(), 1.0, 0.10);
    EXPECT_NEAR(l.at("kld_p99").get<double>() / row.at("kld_p99").get<double>(), 1.0, 0.25);
    EXPECT_GT(l.at("top1").get<double>(), 0.8);
}
