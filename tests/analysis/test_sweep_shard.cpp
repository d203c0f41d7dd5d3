// Sharded sweeps: `--shard i/n` stores merged with jobs merge equal a single-process sweep of
// llama-8m number for number; items measured in another order by a SweepMeasurer equal them
// too (no state carried between items); shard specs, the item partition and the dynamic
// scheduler's re-queueing.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "analysis/sweep/sweep.h"
#include "analysis/sweep/sweep_shard.h"
#include "core/error.h"
#include "core/ggml_type.h"
#include "core/progress.h"
#include "jobs/merge.h"
#include "jobs/runner.h"
#include "jobs/store.h"
#include "support/analysis_options.h"
#include "support/test_data.h"

namespace quantlens {
namespace {

using quantlens::test_support::scratch_dir;
using quantlens::test_support::shared_dir;

using jobs::WorkItem;
using ::testing::HasSubstr;

TEST(ShardSpec, ParsesAndRejects) {
    EXPECT_EQ(parse_shard_spec("0/2"), (ShardSpec{0, 2}));
    EXPECT_EQ(parse_shard_spec("6/7"), (ShardSpec{6, 7}));
    for (const char* bad : {"2/2", "-1/2", "0/0", "1", "a/2", "1/b", "1/2x", "/2", ""}) {
        try {
            parse_shard_spec(bad);
            ADD_FAILURE() << "accepted --shard '" << bad << "'";
        } catch (const Error& e) {
            EXPECT_THAT(e.what(), HasSubstr("0 <= i < n")) << bad;
        }
    }
    const std::string params = params_with_shard(R"({"model":"m"})", {1, 3});
    EXPECT_EQ(shard_of_params(params), (ShardSpec{1, 3}));
    EXPECT_FALSE(shard_of_params(R"({"model":"m"})").has_value());
    EXPECT_THROW(shard_of_params(R"({"shard":{"index":3,"count":3}})"), Error);
}

TEST(ShardItems, PartitionThePendingItemsByCanonicalIndex) {
    std::vector<WorkItem> all;
    for (int u = 0; u < 4; ++u)
        for (const char* t : {"Q4_K", "Q2_K"}) all.push_back({"u" + std::to_string(u), t});
    // Items 1 and 4 are done already: a resumed shard skips them but keeps its share.
    std::vector<WorkItem> pending = all;
    pending.erase(pending.begin() + 4);
    pending.erase(pending.begin() + 1);
    const auto s0 = shard_items(all, pending, {0, 3});
    const auto s1 = shard_items(all, pending, {1, 3});
    const auto s2 = shard_items(all, pending, {2, 3});
    EXPECT_EQ(s0, (std::vector<WorkItem>{all[0], all[3], all[6]}));
    EXPECT_EQ(s1, (std::vector<WorkItem>{all[7]}));  // 1 and 4 are done
    EXPECT_EQ(s2, (std::vector<WorkItem>{all[2], all[5]}));
    EXPECT_EQ(s0.size() + s1.size() + s2.size(), pending.size());
}

TEST(ItemScheduler, HandsOutInOrderAndRequeuesALostWorkersItem) {
    const std::vector<WorkItem> items = {{"a", "Q4_K"}, {"b", "Q4_K"}, {"c", "Q4_K"}};
    ItemScheduler s(items);
    EXPECT_EQ(s.assign(1), items[0]);
    EXPECT_EQ(s.assign(2), items[1]);
    EXPECT_EQ(s.n_in_flight(), 2u);
    // Worker 2 dies with b in flight: b goes back in front of c.
    EXPECT_EQ(s.lose(2), items[1]);
    EXPECT_TRUE(s.is_lost(2));
    EXPECT_EQ(s.assign(3), items[1]);
    EXPECT_TRUE(s.complete(1, items[0]));
    EXPECT_EQ(s.assign(1), items[2]);
    EXPECT_FALSE(s.finished());
    EXPECT_TRUE(s.complete(3, items[1]));
    // The lost worker was only slow: its late result for b is a duplicate.
    EXPECT_FALSE(s.complete(2, items[1]));
    EXPECT_TRUE(s.complete(1, items[2]));
    EXPECT_TRUE(s.finished());
    EXPECT_EQ(s.n_done(), 3u);
    EXPECT_FALSE(s.assign(1).has_value());
}

TEST(ItemScheduler, ALateResultRemovesTheRequeuedCopy) {
    ItemScheduler s({{"a", "Q4_K"}, {"b", "Q4_K"}});
    ASSERT_TRUE(s.assign(1).has_value());
    s.lose(1);  // a back in the queue
    EXPECT_EQ(s.queued(), 2u);
    EXPECT_TRUE(s.complete(1, {"a", "Q4_K"}));  // it arrives after all
    EXPECT_EQ(s.queued(), 1u);
    EXPECT_EQ(s.assign(2), (WorkItem{"b", "Q4_K"}));
}

using Key = std::tuple<std::string, std::string, std::string>;

// Everything but the per-item wall time.
std::map<Key, double> numbers(jobs::Store& store, int64_t id) {
    std::map<Key, double> out;
    for (const auto& m : store.measurements(id))
        if (m.metric != "seconds") out[{m.unit, m.type, m.metric}] = m.value;
    return out;
}

SweepOptions small_sweep() {
    SweepOptions o = test_support::eval_sweep(shared_dir() + "/models/llama-8m", 512, 256,
                                              {GgmlType::Q4_K, GgmlType::Q2_K});
    o.granularity = "layer";
    return o;
}

bool run(jobs::Store& store, int64_t id) {
    store.start(id);
    return jobs::run_job(store, id, [&] { return run_sweep(store, id); }) == jobs::JobState::done;
}

TEST(ShardedSweep, TwoShardsMergedEqualOneProcessAndOrderDoesNotMatter) {
    Progress::set_enabled(false);
    const std::string dir = scratch_dir("sweep-shard-llama8m");
    const SweepOptions o = small_sweep();

    jobs::Store single(dir + "/single.sqlite");
    const int64_t single_id = create_sweep_job(single, o, "test");
    ASSERT_TRUE(run(single, single_id));
    const auto want = numbers(single, single_id);
    // 10 units (embedding, 8 layers, output) + "(all)", × 2 types; every item has its KLD.
    ASSERT_EQ(single.work_items(single_id).size(), 22u);
    EXPECT_GT(want.size(), 22u * 20);
    EXPECT_GT(want.at({"(all)", "Q2_K", "kld_mean"}), want.at({"(all)", "Q4_K", "kld_mean"}));
    EXPECT_GT(want.at({"(all)", "Q4_K", "kld_mean"}), 0.0);

    std::vector<jobs::ShardRef> refs;
    for (int i = 0; i < 2; ++i) {
        const std::string path = dir + "/shard" + std::to_string(i) + ".sqlite";
        jobs::Store shard(path);
        const int64_t id = create_sweep_shard_job(shard, o, {i, 2}, "test");
        ASSERT_TRUE(run(shard, id));
        EXPECT_EQ(shard.item_counts(id).done, 11);  // every second of the 22 items
        EXPECT_TRUE(shard.get_artifact(id, "reference.shard" + std::to_string(i) + "of2"));
        refs.push_back({path, std::nullopt});
    }
    jobs::Store merged(dir + "/merged.sqlite");
    const jobs::MergeResult r = jobs::merge_shards(merged, refs);
    EXPECT_EQ(r.state, jobs::JobState::done);
    EXPECT_EQ(r.items_done, 22);
    EXPECT_EQ(r.items_pending, 0);
    EXPECT_EQ(merged.work_items(r.job_id), single.work_items(single_id));
    EXPECT_FALSE(shard_of_params(merged.get_job(r.job_id).params).has_value());
    const auto got = numbers(merged, r.job_id);
    EXPECT_EQ(got.size(), want.size());
    for (const auto& [key, value] : want) {
        auto it = got.find(key);
        ASSERT_NE(it, got.end()) << std::get<0>(key) << " " << std::get<1>(key) << " "
                                 << std::get<2>(key);
        EXPECT_TRUE(it->second == value || (std::isnan(value) && std::isnan(it->second)))
            << std::get<0>(key) << " " << std::get<1>(key) << " " << std::get<2>(key) << ": "
            << it->second << " vs " << value;
    }

    // A measurer that did other items first (backwards, "(all)" first) gets the same numbers.
    SweepMeasurer measurer(o);
    measurer.prepare();
    for (const auto& [unit, type] : std::vector<std::pair<std::string, std::string>>{
             {"(all)", "Q2_K"}, {"output.weight", "Q4_K"}, {"blk.3", "Q2_K"}, {"blk.0", "Q4_K"}}) {
        const auto m = measurer.measure(unit, type);
        for (const char* metric : {"kld_mean", "ppl", "act_mse", "w_rmse", "top1_agree"})
            EXPECT_EQ(m.at(metric), want.at({unit, type, metric}))
                << unit << " " << type << " " << metric;
    }
    EXPECT_THROW(measurer.measure("blk.99", "Q4_K"), Error);
}

TEST(ShardedSweep, ShardsWithOtherParametersDoNotMerge) {
    Progress::set_enabled(false);
    const std::string dir = scratch_dir("sweep-shard-mismatch");
    SweepOptions a = small_sweep(), b = small_sweep();
    b.types = {GgmlType::Q4_K};
    jobs::Store sa(dir + "/a.sqlite"), sb(dir + "/b.sqlite");
    create_sweep_shard_job(sa, a, {0, 2}, "test");
    create_sweep_shard_job(sb, b, {1, 2}, "test");
    jobs::Store out(dir + "/out.sqlite");
    try {
        jobs::merge_shards(out,
                           {{dir + "/a.sqlite", std::nullopt}, {dir + "/b.sqlite", std::nullopt}});
        ADD_FAILURE() << "merged shards of different sweeps";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("other parameters"));
    }
    SweepOptions budget = small_sweep();
    budget.budget_seconds = 5;
    EXPECT_THROW(create_sweep_shard_job(sa, budget, {0, 2}, "test"), Error);
}

}  // namespace
}  // namespace quantlens
