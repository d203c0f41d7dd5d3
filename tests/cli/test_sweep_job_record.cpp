// Issue 19: what a sweep records about itself. `jobs show` must repeat the real command line
// (it was rebuilt by hand as "quantlens sweep MODEL --eval FILE", losing every other option),
// and the refusals that depend only on the options and the build must come before the job
// exists, so a refused sweep leaves no failed job in the store.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "support/cli_run.h"

using namespace quantlens::cli_testing;

namespace {

size_t job_count(const std::string& store) {
    const Result r = run_cli("jobs list --json --store " + store, "", false);
    const auto doc = nlohmann::json::parse(r.out, nullptr, false);
    if (doc.is_array()) return doc.size();
    if (doc.is_object() && doc.contains("jobs")) return doc["jobs"].size();
    return 0;
}

}  // namespace

TEST(SweepJobRecord, JobsShowRecordsTheRealCommandLine) {
    const std::string dir = fresh_dir("sweep-record");
    const std::string store = dir + "/s.sqlite";
    const std::string args = "sweep " + shared_path("models/llama-8m") + " --eval " +
                             shared_path("data/eval.txt") +
                             " --types Q8_0 --granularity class --tokens 64 --ctx 64 "
                             "--no-uniform --store " +
                             store;
    Result r = run_quiet(args);
    ASSERT_EQ(r.code, 0) << r.out;
    r = run_cli("jobs show 1 --store " + store);
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("quantlens -q " + args), std::string::npos) << r.out;
}

// A refusal that depends only on the options and the build (here --experts with
// --ggml-numerics, and --gpu without CUDA) comes before the job row exists.
TEST(SweepJobRecord, GpuRefusalsComeBeforeTheJob) {
    const std::string dir = fresh_dir("sweep-record");
    const std::string store = dir + "/s.sqlite";
    const std::string base = "sweep " + shared_path("models/llama-8m") + " --eval " +
                             shared_path("data/eval.txt") + " --store " + store;
    Result r = run_quiet(base + " --ggml-numerics --experts");
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.out.find("sweep --experts: not with --ggml-numerics"), std::string::npos) << r.out;
    EXPECT_EQ(job_count(store), 0u);
    r = run_quiet(base + " --gpu --types Q8_0 --granularity class --tokens 64 --ctx 64");
    if (r.out.find("built without CUDA") == std::string::npos)
        GTEST_SKIP() << "a CUDA build: --gpu is accepted";
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_EQ(job_count(store), 0u);
}
