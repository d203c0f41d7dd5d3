// `quantlens calibrate` and `quantlens diagnose` end to end: an imatrix in both formats that
// the reader loads, the calibrate job with its "calibration" artifact, diagnose reading that
// job and storing "diagnostics"; bad input exits 1 with a message naming the problem.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "support/cli_run.h"

#include "formats/imatrix.h"
#include "jobs/store.h"

namespace fs = std::filesystem;
using namespace quantlens::cli_testing;

TEST(CliCalibrate, WritesBothFormatsAndStoresTheJob) {
    const fs::path store = suite_file("jobs.sqlite"), dat = suite_file("llama.dat"),
                   gguf = suite_file("llama.gguf");
    fs::remove(store);
    fs::remove(dat);
    fs::remove(gguf);
    const std::string common = "calibrate " + shared_path("models/llama-8m") + " --text " +
                               shared_path("data/calib.txt") + " --ctx 128 --chunks 4";
    Result r = run_quiet(common + " -o " + dat.string());
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_TRUE(contains(r.out, "blk.7.ffn_down.weight")) << r.out;
    r = run_quiet(common + " -o " + gguf.string() + " --store " + store.string() + " --json",
                  false);
    ASSERT_EQ(r.code, 0) << r.out;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["n_tokens"], 512);
    // 56 calibrated inputs, plus token_embd and output with their weight histogram only.
    EXPECT_EQ(j["tensors"].size(), 58u);
    EXPECT_TRUE(j["tensors"][57]["weight_hist"]["counts"].is_array());

    const quantlens::Imatrix a = quantlens::Imatrix::load(dat.string());
    const quantlens::Imatrix b = quantlens::Imatrix::load(gguf.string());
    ASSERT_EQ(a.entries().size(), 56u);
    ASSERT_EQ(b.entries().size(), 56u);
    EXPECT_EQ(a.entries()[0].counts, std::vector<int64_t>{4});    // calls of 128 tokens
    EXPECT_EQ(b.entries()[0].counts, std::vector<int64_t>{512});  // tokens
    EXPECT_EQ(a.chunk_count(), 4);
    for (size_t i = 0; i < a.entries()[3].values.size(); ++i)
        EXPECT_NEAR(a.entries()[3].values[i], b.entries()[3].values[i],
                    1e-6 * b.entries()[3].values[i]);

    quantlens::jobs::Store s(store.string());
    const auto jobs = s.list_jobs();
    ASSERT_EQ(jobs.size(), 1u);
    EXPECT_EQ(jobs[0].kind, quantlens::jobs::JobKind::calibrate);
    EXPECT_EQ(jobs[0].state, quantlens::jobs::JobState::done);
    const auto art = s.get_artifact(jobs[0].id, "calibration");
    ASSERT_TRUE(art.has_value());
    const auto cal = nlohmann::json::parse(art->data);
    EXPECT_EQ(cal["tensors"][0]["channel_importance"].size(), 256u);
    EXPECT_TRUE(cal["tensors"][0]["kurtosis"].is_number());
    EXPECT_EQ(cal["layers"].size(), 8u);

    // diagnose on that job: weight table, AWQ families, artifact stored on the job.
    r = run_quiet("diagnose " + shared_path("models/llama-8m") + " --calib " +
                      std::to_string(jobs[0].id) + " --store " + store.string() +
                      " --type Q4_K --chunks 1 --samples 64 --bits 3"
                      " --json",
                  false);
    ASSERT_EQ(r.code, 0) << r.out;
    const auto d = nlohmann::json::parse(r.out);
    EXPECT_EQ(d["weights"].size(), 58u);  // 56 linear + token_embd + output
    EXPECT_EQ(d["awq_families"].size(), 7u);
    EXPECT_EQ(d["weights"][0]["groups"].size(), 4u);
    ASSERT_TRUE(s.get_artifact(jobs[0].id, "diagnostics").has_value());
    const auto cal2 = nlohmann::json::parse(s.get_artifact(jobs[0].id, "calibration")->data);
    EXPECT_TRUE(cal2["tensors"][0].contains("weight_hist"));
}

TEST(CliCalibrate, BadInputExitsWithAMessage) {
    const fs::path empty = suite_file("empty.txt");
    std::ofstream(empty).close();
    Result r = run_quiet("calibrate " + shared_path("models/llama-8m") + " --text " +
                         empty.string() + " -o " + suite_file("x.dat").string());
    EXPECT_EQ(r.code, 1);
    EXPECT_TRUE(contains(r.out, "empty")) << r.out;
    EXPECT_FALSE(fs::exists(suite_file("x.dat")));
    r = run_quiet("calibrate " + shared_path("models/llama-8m") + " --text " +
                  shared_path("models/llama-8m/config.json") + " -o " +
                  suite_file("y.dat").string());
    EXPECT_EQ(r.code, 1);
    EXPECT_TRUE(contains(r.out, "fewer than one chunk")) << r.out;
    r = run_quiet("calibrate " + shared_path("models/llama-8m") + " --text " +
                  shared_path("data/calib.txt"));
    EXPECT_EQ(r.code, 1);
    EXPECT_TRUE(contains(r.out, "-o")) << r.out;
}
