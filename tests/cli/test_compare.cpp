// `quantlens compare` and `quantlens audit` end to end through the built binary: the JSON
// of a short comparison of llama.cpp's Q4_K_M file, the one-line error for mismatched
// models, and an audit killed with SIGKILL in the middle of a sweep, then resumed with
// `quantlens jobs resume`, with the same results as an audit that was never interrupted.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include <nlohmann/json.hpp>

#include "support/cli_run.h"
#include "jobs/store.h"

using ::testing::HasSubstr;
using namespace quantlens::cli_testing;

namespace {

TEST(CliCompare, JsonOfAShortComparison) {
    const std::string s = shared_dir(), dir = fresh_dir("cli-compare");
    const Result r = run_cli(
        "compare " + s + "/models/llama-8m " + s + "/models/llama-8m-Q4_K_M.gguf --text " + s +
            "/data/eval.txt --ctx 128 --chunks 2 --json --store " + dir + "/jobs.sqlite",
        "", false);
    ASSERT_EQ(r.code, 0) << r.out;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["tokens_scored"], 2 * 63);
    EXPECT_GT(j["kld"]["mean"].get<double>(), 0.005);
    EXPECT_LT(j["kld"]["mean"].get<double>(), 0.08);
    EXPECT_EQ(j["layers"].size(), 10u);
    EXPECT_EQ(j["tensors"].size(), 75u);  // 8 blocks × 9 + token_embd, output_norm, output
    EXPECT_EQ(j["largest_weight_error"].size(), 5u);
    // Stored as a compare job the report can read.
    quantlens::jobs::Store store(dir + "/jobs.sqlite");
    const auto jobs = store.list_jobs({quantlens::jobs::JobKind::compare});
    ASSERT_EQ(jobs.size(), 1u);
    EXPECT_EQ(jobs[0].state, quantlens::jobs::JobState::done);
    EXPECT_FALSE(store.measurements(jobs[0].id, "Q4_K", "w_rel_fro").empty());
}

TEST(CliCompare, MismatchedModelsIsOneLineError) {
    const std::string s = shared_dir(), dir = fresh_dir("cli-compare");
    const Result r =
        run_cli("compare " + s + "/models/tiny-moe " + s + "/models/llama-8m-Q4_K_M.gguf --text " +
                s + "/data/eval.txt --store " + dir + "/jobs.sqlite");
    EXPECT_EQ(r.code, 1);
    EXPECT_THAT(r.out, HasSubstr("error: "));
    EXPECT_THAT(r.out, HasSubstr("not the same model"));
}

// Measurements of every job in a store but timings and ids, keyed by kind, unit, type and
// metric.
std::map<std::string, double> all_results(const std::string& path) {
    quantlens::jobs::Store store(path);
    std::map<std::string, double> out;
    for (const auto& j : store.list_jobs())
        for (const auto& m : store.measurements(j.id))
            if (m.metric != "seconds" && m.metric != "job")
                out[std::string(quantlens::jobs::kind_name(j.kind)) + "|" + m.unit + "|" + m.type +
                    "|" + m.metric] = m.value;
    return out;
}

TEST(CliAudit, KilledAuditResumesToTheSameResults) {
    const std::string s = shared_dir(), dir = fresh_dir("cli-compare");
    const std::string zoo = dir + "/zoo.yaml";
    std::ofstream(zoo)
        << "base_dir: " << s << "\n"
        << "defaults: {text: data/eval.txt, types: [Q4_K, Q2_K], tokens: 128, ctx: 64}\n"
        << "models:\n  - fp: models/llama-8m\n  - fp: models/tiny-qwen2\n";
    const std::string killed = dir + "/killed.sqlite", straight = dir + "/straight.sqlite";

    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        const int null = ::open("/dev/null", O_WRONLY);
        dup2(null, 1), dup2(null, 2);
        execl(QL_BINARY_DIR "/quantlens", "quantlens", "audit", zoo.c_str(), "--store",
              killed.c_str(), static_cast<char*>(nullptr));
        _exit(127);
    }
    // Kill it once llama-8m's sweep has measured a few items.
    bool seen = false;
    for (int i = 0; i < 60000 && !seen; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        if (!std::filesystem::exists(killed)) continue;
        try {
            quantlens::jobs::Store store(killed);
            for (const auto& j : store.list_jobs({quantlens::jobs::JobKind::sweep}))
                if (j.progress_done >= 3) seen = true;
        } catch (const std::exception&) {
            // schema being created; look again
        }
    }
    ::kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(seen);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the audit finished before it could be killed";

    // Continued by the generic `jobs resume` (the audit is job 1, its sweeps are children;
    // running the same audit command again resumes it too, see the README).
    const Result resumed = run_cli("jobs resume 1 --store " + killed);
    ASSERT_EQ(resumed.code, 0) << resumed.out;
    EXPECT_THAT(resumed.out, HasSubstr("attention"));
    EXPECT_THAT(resumed.out, HasSubstr("tiny-qwen2 Q2_K"));

    const Result once = run_cli("audit " + zoo + " --json --store " + straight, "", false);
    ASSERT_EQ(once.code, 0) << once.out;
    EXPECT_EQ(nlohmann::json::parse(once.out)["series"].size(), 4u);
    const auto a = all_results(killed), b = all_results(straight);
    EXPECT_GT(a.size(), 100u);
    EXPECT_EQ(a, b);
}

}  // namespace
