// Shards merged into one job equal the same job run in one piece, whatever the split; and
// shards that do not belong together are refused with a message naming both.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/error.h"
#include "jobs/merge.h"
#include "jobs_test_util.h"
#include "support/error_of.h"

using namespace quantlens;
using namespace quantlens::jobs;
using namespace quantlens::jobs::testing;
using ::testing::HasSubstr;

namespace {

constexpr int kLayers = 2;

// Runs shard `index` of `count`: a static split by item position, as `--shard i/n` does.
std::string run_shard(const std::string& dir, int index, int count) {
    const std::string path = dir + "/shard" + std::to_string(index) + ".sqlite";
    Store store(path);
    const std::string params = R"({"tokens":512,"shard":")" + std::to_string(index) + "/" +
                               std::to_string(count) + R"("})";
    const int64_t id = create_fake_sweep(store, kLayers, params);
    store.start(id);
    const auto items = store.pending_items(id);
    for (size_t k = 0; k < items.size(); ++k) {
        if (static_cast<int>(k % count) != index) continue;
        store.record_item(id, items[k].unit, items[k].type,
                          fake_metrics(items[k].unit, items[k].type));
    }
    store.put_artifact(id, {"base_ppl", true, R"({"ppl":17.25})"});
    store.pause(id);
    store.honour_stop(id);  // a shard stops with the other shards' items pending
    return path;
}

std::string error_of(const std::function<void()>& fn) {
    return test_support::error_of(fn, "(no error)");
}

}  // namespace

TEST(Merge, ShardsMergeIntoTheSingleRunsResultsWhateverTheSplit) {
    const std::string dir = fresh_dir("merge");
    std::vector<Measurement> single;
    std::vector<Unit> single_units;
    {
        Store store(dir + "/single.sqlite");
        const int64_t id = create_fake_sweep(store, kLayers, R"({"tokens":512})");
        store.start(id);
        run_fake_items(store, id);
        store.finish(id);
        single = store.measurements(id);
        single_units = store.units(id);
    }
    for (int count : {2, 3}) {
        std::vector<ShardRef> refs;
        const std::string split_dir = dir + "/split" + std::to_string(count);
        std::filesystem::create_directories(split_dir);
        for (int i = 0; i < count; ++i)
            refs.push_back({run_shard(split_dir, i, count), std::nullopt});
        Store out(dir + "/merged" + std::to_string(count) + ".sqlite");
        const MergeResult r = merge_shards(out, refs);
        EXPECT_EQ(r.items_done, 72);  // (1 + 2·4) units × 8 types
        EXPECT_EQ(r.items_pending, 0);
        EXPECT_EQ(r.measurements, static_cast<int64_t>(single.size()));
        EXPECT_EQ(out.measurements(r.job_id), single) << count << " shards";
        EXPECT_EQ(out.units(r.job_id), single_units);
        const Job job = out.get_job(r.job_id);
        EXPECT_EQ(job.params, R"({"tokens":512})");  // the shard assignment is dropped
        EXPECT_EQ(job.model_hash, "00112233aabbccdd");
        EXPECT_EQ(job.progress_done, 72);
        EXPECT_EQ(job.progress_total, 72);
        EXPECT_EQ(out.get_artifact(r.job_id, "base_ppl")->data, R"({"ppl":17.25})");
        // Every shard stopped with the other shards' items pending; together nothing is.
        EXPECT_EQ(job.state, JobState::done);
        EXPECT_GT(job.finished, 0);
    }
}

TEST(Merge, MissingShardLeavesItsItemsPendingAndResumable) {
    const std::string dir = fresh_dir("merge");
    Store out(dir + "/out.sqlite");
    const MergeResult r = merge_shards(out, {parse_shard_ref(run_shard(dir, 0, 2))});
    EXPECT_EQ(r.items_done, 36);
    EXPECT_EQ(r.items_pending, 36);
    EXPECT_EQ(out.pending_items(r.job_id).size(), 36u);
    EXPECT_EQ(out.resume(r.job_id).state, JobState::queued);
}

TEST(Merge, ConflictingShardsAreRefused) {
    const std::string dir = fresh_dir("merge");
    const std::string a = run_shard(dir, 0, 2);
    const std::string b = run_shard(dir, 1, 2);
    {
        // Same item measured with another value in b.
        Store store(b);
        store.resume(1);
        store.start(1);
        store.record_item(1, "token_embd.weight", "Q8_0", {{"kld", 123.0}});
        store.pause(1);
        store.honour_stop(1);
    }
    Store out(dir + "/out.sqlite");
    EXPECT_THAT(error_of([&] {
                    merge_shards(out, {{a, {}}, {b, {}}});
                }),
                HasSubstr("token_embd.weight / Q8_0 / kld is"));
    EXPECT_TRUE(out.list_jobs().empty()) << "a refused merge writes nothing";

    const std::string other_dir = fresh_dir("merge-other");
    Store c(other_dir + "/c.sqlite");
    NewJob nj;
    nj.kind = JobKind::sweep;
    nj.model_hash = "ffff";
    c.create_job(nj);
    EXPECT_THAT(error_of([&] {
                    merge_shards(out, {{a, {}}, {c.path(), {}}});
                }),
                HasSubstr("measured another model"));
    EXPECT_THAT(error_of([&] {
                    merge_shards(out, {{dir + "/nope.sqlite", {}}});
                }),
                HasSubstr("nope.sqlite: no such shard store"));
    c.create_job(nj);
    EXPECT_THAT(error_of([&] {
                    merge_shards(out, {{c.path(), {}}});
                }),
                HasSubstr("holds 2 jobs; name the shard's job as"));
}

TEST(Merge, ParsesShardReferences) {
    EXPECT_EQ(parse_shard_ref("a/b.sqlite").path, "a/b.sqlite");
    EXPECT_FALSE(parse_shard_ref("a/b.sqlite").job);
    EXPECT_EQ(parse_shard_ref("a/b.sqlite:12").job, 12);
    EXPECT_EQ(parse_shard_ref("a/b.sqlite:12").path, "a/b.sqlite");
    EXPECT_FALSE(parse_shard_ref("host:dir/b.sqlite").job);
}
