// audit: a three-model zoo (llama-8m with its Q4_K_M file, tiny-qwen2, tiny-moe) on a few
// tokens and two types, run once straight through and once paused in the middle of a child
// sweep and resumed; both must give identical measurements, and the cross-model table must
// separate attention, FFN and expert sensitivity.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include <nlohmann/json.hpp>

#include "analysis/studies/audit.h"
#include "core/error.h"
#include "core/progress.h"
#include "jobs/store.h"
#include "support/test_data.h"

namespace quantlens {
namespace {

using quantlens::test_support::scratch_dir;
using quantlens::test_support::shared_dir;

using ::testing::HasSubstr;

// A zoo file whose relative paths go through base_dir to ../shared.
std::string write_zoo(const std::string& dir, const std::string& models_yaml) {
    const std::string path = dir + "/zoo.yaml";
    std::ofstream(path) << "base_dir: " << shared_dir() << "\n"
                        << "defaults:\n  text: data/eval.txt\n  types: [Q4_K, Q2_K]\n"
                        << "  tokens: 128\n  ctx: 64\n"
                        << models_yaml;
    return path;
}

const char* kZooModels = R"(models:
  - name: llama-8m
    fp: models/llama-8m
    quants: [models/llama-8m-Q4_K_M.gguf]
  - fp: models/tiny-qwen2
  - name: moe
    fp: models/tiny-moe
)";

// Every measurement of the audit and of its child jobs, keyed by job kind and model, without
// the timings and job ids (which differ between runs).
std::map<std::string, double> results(jobs::Store& store, int64_t audit) {
    std::map<std::string, double> out;
    for (const auto& m : store.measurements(audit))
        if (m.metric != "job") out["audit|" + m.unit + "|" + m.type + "|" + m.metric] = m.value;
    for (const auto& name : store.artifact_names(audit)) {
        if (name.rfind("child:", 0) != 0) continue;
        const int64_t child =
            nlohmann::json::parse(store.get_artifact(audit, name)->data).at("job");
        for (const auto& m : store.measurements(child))
            if (m.metric != "seconds")
                out[name + "|" + m.unit + "|" + m.type + "|" + m.metric] = m.value;
    }
    return out;
}

TEST(Audit, ResumedAfterPauseGivesTheSameResults) {
    Progress::set_enabled(false);
    const std::string dir = scratch_dir("audit-resume");
    const Zoo zoo = load_zoo(write_zoo(dir, kZooModels));
    ASSERT_EQ(zoo.models.size(), 3u);
    EXPECT_EQ(zoo.models[1].name, "tiny-qwen2");  // defaults to the folder name
    EXPECT_EQ(zoo.models[0].quants.size(), 1u);

    // Straight through.
    jobs::Store a(dir + "/a.sqlite");
    const int64_t ida = find_or_create_audit_job(a, zoo, "test");
    a.start(ida);
    ASSERT_TRUE(run_audit(a, ida));
    a.finish(ida);

    // Paused by a request in the middle of tiny-qwen2's sweep (the second model), as
    // `--time-limit` or `quantlens jobs pause` would, then resumed.
    jobs::Store b(dir + "/b.sqlite");
    bool resumed = true;
    const int64_t idb = find_or_create_audit_job(b, zoo, "test", &resumed);
    EXPECT_FALSE(resumed);
    b.start(idb);
    std::atomic<bool> stop{false}, paused{false};
    std::thread watcher([&] {
        while (!stop) {
            for (const auto& j : b.list_jobs({jobs::JobKind::sweep}))
                if (j.model.find("tiny-qwen2") != std::string::npos && j.progress_done >= 3 &&
                    j.state == jobs::JobState::running) {
                    b.pause(j.id);
                    b.pause(idb);
                    paused = true;
                    return;
                }
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
    });
    const bool first = run_audit(b, idb);
    stop = true;
    watcher.join();
    ASSERT_TRUE(paused);
    ASSERT_FALSE(first);
    EXPECT_EQ(b.honour_stop(idb), jobs::JobState::paused);
    const jobs::ItemCounts partial = b.item_counts(idb);
    EXPECT_LT(partial.done, partial.total);
    // The same zoo finds the same job again.
    EXPECT_EQ(find_or_create_audit_job(b, zoo, "test", &resumed), idb);
    EXPECT_TRUE(resumed);
    b.resume(idb);
    b.start(idb);
    ASSERT_TRUE(run_audit(b, idb));
    b.finish(idb);

    const auto ra = results(a, ida), rb = results(b, idb);
    EXPECT_GT(ra.size(), 500u);
    EXPECT_EQ(ra, rb);

    // The cross-model profile.
    const auto rows = audit_rows(a, ida);
    ASSERT_EQ(rows.size(), 6u);  // 3 models × 2 types
    const auto& groups = audit_groups();
    auto col = [&](const std::string& g) {
        return static_cast<size_t>(std::find(groups.begin(), groups.end(), g) - groups.begin());
    };
    std::map<std::string, double> kld_by;
    for (const auto& r : rows) {
        kld_by[r.model + r.type] = r.kld_sum;
        EXPECT_GT(r.kld_sum, 0.0) << r.model << " " << r.type;
        EXPECT_GT(r.share[col("attention")], 0.0) << r.model;
        EXPECT_EQ(std::isnan(r.share[col("experts")]), r.model != "moe") << r.model;
        EXPECT_EQ(std::isnan(r.share[col("ffn")]), r.model == "moe") << r.model;
        if (r.model == "moe") {
            EXPECT_GT(r.share[col("experts")], 0.0);
            // llama.cpp keeps the router in F32, so it is not swept.
            EXPECT_TRUE(std::isnan(r.share[col("router")]));
        }
        // Every unit has exactly one role group and one depth (or is embed/output).
        double roles = 0, depth = 0;
        for (size_t g = 0; g < groups.size(); ++g) {
            if (std::isnan(r.share[g])) continue;
            (g < col("first_layer") ? roles : depth) += r.share[g];
        }
        EXPECT_NEAR(roles, 1.0, 1e-9) << r.model << " " << r.type;
        EXPECT_NEAR(depth + (std::isnan(r.share[col("embed")]) ? 0 : r.share[col("embed")]) +
                        (std::isnan(r.share[col("output")]) ? 0 : r.share[col("output")]),
                    1.0, 1e-9)
            << r.model << " " << r.type;
        if (r.model == "llama-8m") {
            ASSERT_EQ(r.compares.size(), 1u);
            EXPECT_THAT(r.compares[0], HasSubstr("llama-8m-Q4_K_M.gguf: mean KLD"));
        }
    }
    for (const std::string m : {"llama-8m", "tiny-qwen2", "moe"})
        EXPECT_GT(kld_by[m + "Q2_K"], kld_by[m + "Q4_K"]) << m;  // fewer bits, more damage
    const std::string table = audit_table(rows);
    EXPECT_THAT(table, HasSubstr("experts"));
    EXPECT_THAT(table, HasSubstr("moe Q2_K"));
    EXPECT_EQ(audit_to_json(rows, ida)["series"].size(), 6u);
}

TEST(Audit, BadZooNamesTheEntry) {
    const std::string dir = scratch_dir("audit-bad");
    try {
        load_zoo(write_zoo(dir, "models:\n  - name: x\n    fp: models/no-such-model\n"));
        ADD_FAILURE() << "no Error";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("models[0] (x): fp"));
        EXPECT_THAT(e.what(), HasSubstr("no-such-model"));
    }
    try {
        load_zoo(write_zoo(dir, "models:\n  - fp: models/llama-8m\n    types: [Q4_K, Q9_Z]\n"));
        ADD_FAILURE() << "no Error";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("unknown type 'Q9_Z'"));
    }
    EXPECT_THROW(load_zoo(dir + "/missing.yaml"), Error);
}

}  // namespace
}  // namespace quantlens
