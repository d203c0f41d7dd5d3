// Job store semantics on real SQLite files: jobs and their state machine, the item protocol
// (exactly once), results round-trips, liveness, and bad input (missing job, corrupt file,
// locked store).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <fstream>
#include <limits>
#include <random>
#include <thread>

#include "core/error.h"
#include "jobs/runner.h"
#include "jobs_test_util.h"
#include "support/error_of.h"

using namespace quantlens;
using namespace quantlens::jobs;
using namespace quantlens::jobs::testing;
using ::testing::HasSubstr;

namespace {

std::string error_of(const std::function<void()>& fn) {
    return test_support::error_of(fn, "(no error)");
}

void raw_exec(const std::string& path, const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db);
    sqlite3_close(db);
}

}  // namespace

TEST(Store, CreatesJobWithItsInputsAndListsIt) {
    const std::string path = fresh_dir("store") + "/sub/dir/jobs.sqlite";  // dirs are created
    Store store(path);
    const int64_t id = create_fake_sweep(store, 2, R"({"tokens":8192,"types":["Q4_K"]})");
    const Job job = store.get_job(id);
    EXPECT_EQ(job.id, id);
    EXPECT_EQ(job.kind, JobKind::sweep);
    EXPECT_EQ(job.state, JobState::queued);
    EXPECT_EQ(job.status(), "queued");
    EXPECT_EQ(job.model, "llama-8m");
    EXPECT_EQ(job.model_hash, "00112233aabbccdd");
    EXPECT_EQ(job.params, R"({"tokens":8192,"types":["Q4_K"]})");
    EXPECT_EQ(job.progress_total, (1 + 2 * 4) * 8);
    EXPECT_EQ(job.progress_done, 0);
    EXPECT_GT(job.created, 1.6e9);
    EXPECT_EQ(job.started, 0);

    NewJob cal;
    cal.kind = JobKind::calibrate;
    const int64_t id2 = store.create_job(cal);
    EXPECT_EQ(store.list_jobs().size(), 2u);
    const auto sweeps = store.list_jobs({.kind = JobKind::sweep});
    ASSERT_EQ(sweeps.size(), 1u);
    EXPECT_EQ(sweeps[0].id, id);
    EXPECT_EQ(store.list_jobs({.kind = JobKind::calibrate})[0].id, id2);
    EXPECT_TRUE(store.list_jobs({.state = JobState::done}).empty());

    // Reopening reads the same rows (the file is the state).
    Store again(path);
    EXPECT_EQ(again.get_job(id).params, job.params);
    EXPECT_EQ(again.units(id), fake_units(2));
    EXPECT_EQ(again.pending_items(id), fake_items(fake_units(2)));
}

// What a runner reads its job with: the job of the kind it runs, or a refusal naming both
// kinds (the article follows the wanted kind's name).
TEST(Store, GetJobOfKindRefusesAnotherKindByName) {
    Store store(fresh_dir("store") + "/jobs.sqlite");
    const int64_t id = create_fake_sweep(store, 1, "{}");
    EXPECT_EQ(store.get_job_of_kind(id, JobKind::sweep).id, id);
    EXPECT_EQ(error_of([&] { store.get_job_of_kind(id, JobKind::audit); }),
              "job " + std::to_string(id) + " is a sweep job, not an audit");
    EXPECT_EQ(error_of([&] { store.get_job_of_kind(id, JobKind::compare); }),
              "job " + std::to_string(id) + " is a sweep job, not a compare");
    EXPECT_EQ(kind_names(), "sweep, calibrate, eval, quantize, verify, compare, audit, plan");
    EXPECT_EQ(state_names(), "queued, running, paused, done, failed, cancelled");
}

TEST(Store, RecordsAnItemExactlyOnceWithAllItsMetrics) {
    Store store(fresh_dir("store") + "/jobs.sqlite");
    const int64_t id = create_fake_sweep(store, 1);
    store.start(id);
    const Metrics first = {{"kld", 0.0123},
                           {"dppl", std::numeric_limits<double>::quiet_NaN()},
                           {"snr_db", std::numeric_limits<double>::infinity()}};
    EXPECT_TRUE(store.record_item(id, "blk.0.attn_v.weight", "Q4_K", first));
    EXPECT_FALSE(store.record_item(id, "blk.0.attn_v.weight", "Q4_K", {{"kld", 9.0}}));
    EXPECT_TRUE(store.is_done(id, "blk.0.attn_v.weight", "Q4_K"));
    EXPECT_FALSE(store.is_done(id, "blk.0.attn_v.weight", "Q5_K"));

    const auto ms = store.measurements(id);
    ASSERT_EQ(ms.size(), 3u);  // ordered by metric name
    EXPECT_EQ(ms[0].metric, "dppl");
    EXPECT_TRUE(std::isnan(ms[0].value));
    EXPECT_EQ(ms[1].metric, "kld");
    EXPECT_EQ(ms[1].value, 0.0123);  // the first result is kept
    EXPECT_EQ(ms[2].value, std::numeric_limits<double>::infinity());
    EXPECT_EQ(store.measurements(id, "Q4_K", "kld").size(), 1u);
    EXPECT_TRUE(store.measurements(id, "Q2_K").empty());

    const ItemCounts counts = store.item_counts(id);
    EXPECT_EQ(counts.total, 5 * 8);
    EXPECT_EQ(counts.done, 1);
    EXPECT_EQ(store.pending_items(id).size(), 5u * 8 - 1);
    EXPECT_EQ(store.get_job(id).progress_done, 1);

    // An item that was never added (an eval job's single result) is recorded as done.
    EXPECT_TRUE(store.record_item(id, "model", "Q4_K_M", {{"ppl", 12.5}}));
    EXPECT_EQ(store.item_counts(id).total, 5 * 8 + 1);
    EXPECT_EQ(store.item_counts(id).done, 2);

    // Adding the items again keeps what is done.
    EXPECT_EQ(store.add_work_items(id, fake_items(fake_units(1))), 0);
    EXPECT_EQ(store.item_counts(id).done, 2);
}

TEST(Store, StateMachinePauseResumeCancelFinish) {
    Store store(fresh_dir("store") + "/jobs.sqlite");
    const int64_t id = create_fake_sweep(store, 1);
    store.start(id);
    Job job = store.get_job(id);
    EXPECT_EQ(job.state, JobState::running);
    EXPECT_EQ(job.pid, getpid());
    EXPECT_FALSE(job.interrupted);
    EXPECT_GT(job.started, 0);
    EXPECT_FALSE(store.should_stop(id));
    EXPECT_THAT(error_of([&] { store.start(id); }), HasSubstr("only a queued job can start"));

    // A pause request on a live job waits for the job's own process.
    job = store.pause(id);
    EXPECT_EQ(job.state, JobState::running);
    EXPECT_EQ(job.requested, StopRequest::pause);
    EXPECT_TRUE(store.should_stop(id));
    // ...and can be taken back before it is honoured.
    EXPECT_EQ(store.resume(id).requested, StopRequest::none);
    EXPECT_FALSE(store.should_stop(id));
    store.pause(id);
    EXPECT_EQ(store.honour_stop(id), JobState::paused);
    job = store.get_job(id);
    EXPECT_EQ(job.state, JobState::paused);
    EXPECT_EQ(job.pid, 0);
    EXPECT_GE(job.elapsed, 0);

    EXPECT_EQ(store.resume(id).state, JobState::queued);
    store.start(id);
    EXPECT_TRUE(run_fake_items(store, id));
    store.finish(id);
    job = store.get_job(id);
    EXPECT_EQ(job.state, JobState::done);
    EXPECT_GT(job.finished, 0);
    EXPECT_DOUBLE_EQ(job.fraction(), 1.0);
    EXPECT_THAT(error_of([&] { store.resume(id); }), HasSubstr("is done; it cannot be resumed"));
    EXPECT_THAT(error_of([&] { store.cancel(id); }), HasSubstr("already done"));
    EXPECT_THAT(error_of([&] { store.set_state(id, JobState::running); }),
                HasSubstr("cannot become running"));

    // Cancel: queued → cancelled at once; running → on request.
    const int64_t id2 = create_fake_sweep(store, 1);
    EXPECT_EQ(store.cancel(id2).state, JobState::cancelled);
    const int64_t id3 = create_fake_sweep(store, 1);
    store.start(id3);
    EXPECT_EQ(store.cancel(id3).requested, StopRequest::cancel);
    EXPECT_EQ(store.honour_stop(id3), JobState::cancelled);
    EXPECT_THAT(error_of([&] { store.resume(id3); }), HasSubstr("cannot be resumed"));

    // A failed job keeps its error and may be retried.
    const int64_t id4 = create_fake_sweep(store, 1);
    store.start(id4);
    store.fail(id4, "out of memory");
    EXPECT_EQ(store.get_job(id4).error, "out of memory");
    EXPECT_EQ(store.resume(id4).state, JobState::queued);
    EXPECT_EQ(store.get_job(id4).error, "");
}

TEST(Store, DeadProcessMeansInterruptedAndResumable) {
    const std::string path = fresh_dir("store") + "/jobs.sqlite";
    int64_t id = 0;
    {
        Store store(path);
        id = create_fake_sweep(store, 1);
    }
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        try {
            Store store(path);
            store.start(id);
            store.record_item(id, "token_embd.weight", "Q8_0",
                              fake_metrics("token_embd.weight", "Q8_0"));
        } catch (...) {
            _exit(1);
        }
        _exit(0);  // exits while "running", as kill -9 would leave it
    }
    int status = 0;
    waitpid(child, &status, 0);
    ASSERT_EQ(WEXITSTATUS(status), 0);

    Store store(path);
    Job job = store.get_job(id);
    EXPECT_EQ(job.state, JobState::running);
    EXPECT_TRUE(job.interrupted);
    EXPECT_EQ(job.status(), "interrupted");
    EXPECT_EQ(job.pid, child);
    EXPECT_EQ(store.item_counts(id).done, 1);
    EXPECT_THAT(error_of([&] { store.start(id); }), HasSubstr("interrupted"));
    job = store.resume(id);
    EXPECT_EQ(job.state, JobState::queued);
    EXPECT_FALSE(job.interrupted);
    store.start(id);
    EXPECT_TRUE(run_fake_items(store, id));
    store.finish(id);
    EXPECT_EQ(store.item_counts(id).done, 5 * 8);
}

TEST(Store, StaleHeartbeatOnAnotherHostIsInterrupted) {
    const std::string path = fresh_dir("store") + "/jobs.sqlite";
    Store store(path, {.stale_after_s = 60});
    const int64_t id = create_fake_sweep(store, 1);
    store.start(id);
    raw_exec(path, "UPDATE jobs SET host='node17', pid=1, heartbeat=strftime('%s','now')-30");
    EXPECT_FALSE(store.get_job(id).interrupted);
    raw_exec(path, "UPDATE jobs SET heartbeat=strftime('%s','now')-600");
    EXPECT_TRUE(store.get_job(id).interrupted);
    EXPECT_EQ(store.cancel(id).state, JobState::cancelled);  // no process left to ask
}

TEST(Store, MissingJobIsAnErrorNamingTheFileAndId) {
    const std::string path = fresh_dir("store") + "/jobs.sqlite";
    Store store(path);
    const std::string expected = path + ": job 42 does not exist";
    EXPECT_EQ(error_of([&] { store.get_job(42); }), expected);
    EXPECT_EQ(error_of([&] { store.record_item(42, "u", "Q4_K", {{"kld", 1}}); }), expected);
    EXPECT_EQ(error_of([&] { store.pause(42); }), expected);
    EXPECT_EQ(error_of([&] { store.remove(42); }), expected);
    EXPECT_EQ(error_of([&] { store.update_progress(42, 1, 2, ""); }), expected);
    EXPECT_EQ(error_of([&] { store.pending_items(42); }), expected);
    EXPECT_FALSE(store.find_job(42).has_value());
}

TEST(Store, CorruptOrForeignFileIsAnError) {
    const std::string dir = fresh_dir("store");
    const std::string junk = dir + "/junk.sqlite";
    {
        std::mt19937 rng(7);
        std::ofstream out(junk, std::ios::binary);
        for (int i = 0; i < 8192; ++i) out.put(static_cast<char>(rng() & 0xff));
    }
    EXPECT_EQ(error_of([&] { Store s(junk); }),
              junk + ": not a job store: the file is not an SQLite database");

    const std::string foreign = dir + "/foreign.sqlite";
    raw_exec(foreign, "CREATE TABLE photos(id INTEGER)");
    EXPECT_THAT(error_of([&] { Store s(foreign); }),
                HasSubstr(foreign + ": an SQLite database, but not a quantlens job store"));

    EXPECT_THAT(error_of([&] { Store s(dir); }), HasSubstr("is a directory"));

    // A real store whose pages were overwritten past the header.
    const std::string damaged = dir + "/damaged.sqlite";
    {
        Store s(damaged);
        create_fake_sweep(s, 4);
    }
    raw_exec(damaged, "PRAGMA wal_checkpoint(TRUNCATE)");
    {
        std::fstream f(damaged, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(4096);
        for (int i = 0; i < 4096 * 3; ++i) f.put(static_cast<char>(0xA5));
    }
    EXPECT_THAT(error_of([&] {
                    Store s(damaged);
                    s.measurements(1);
                    s.pending_items(1);
                    s.units(1);
                }),
                HasSubstr(damaged + ": the job store is corrupt"));
}

TEST(Store, LockedStoreTimesOutWithAClearError) {
    const std::string path = fresh_dir("store") + "/jobs.sqlite";
    Store store(path, {.busy_timeout_ms = 100});
    const int64_t id = create_fake_sweep(store, 1);

    sqlite3* other = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &other), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(error_of([&] { store.record_item(id, "token_embd.weight", "Q8_0", {}); }),
              path +
                  ": the job store is locked by another process (waited 100 ms while "
                  "BEGIN IMMEDIATE)");
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_GE(waited, 0.09);
    EXPECT_LT(waited, 5.0);
    // Readers are not blocked by a writer (WAL): the web app can read during a sweep.
    EXPECT_EQ(store.get_job(id).state, JobState::queued);
    EXPECT_EQ(store.item_counts(id).done, 0);  // the failed transaction left nothing
    sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
    EXPECT_TRUE(store.record_item(id, "token_embd.weight", "Q8_0", {}));
    sqlite3_close(other);
}

TEST(Store, ArtifactsRoundTripJsonAndBytes) {
    Store store(fresh_dir("store") + "/jobs.sqlite");
    const int64_t id = create_fake_sweep(store, 1);
    std::string bytes(1000, '\0');
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 37);
    store.put_artifact(id, {"recipe", true, R"({"blk.0.attn_v.weight":"Q6_K"})"});
    store.put_artifact(id, {"imatrix.in_sum2", false, bytes});
    EXPECT_EQ(store.get_artifact(id, "imatrix.in_sum2")->data, bytes);
    EXPECT_FALSE(store.get_artifact(id, "imatrix.in_sum2")->is_json);
    store.put_artifact(id, {"recipe", true, R"({"blk.0.attn_v.weight":"Q8_0"})"});
    EXPECT_EQ(store.get_artifact(id, "recipe")->data, R"({"blk.0.attn_v.weight":"Q8_0"})");
    EXPECT_FALSE(store.get_artifact(id, "absent").has_value());
    EXPECT_EQ(store.artifact_names(id), (std::vector<std::string>{"imatrix.in_sum2", "recipe"}));
}

TEST(Store, RemoveDeletesEveryRowAndProtectsLiveJobs) {
    Store store(fresh_dir("store") + "/jobs.sqlite");
    const int64_t keep = create_fake_sweep(store, 1);
    const int64_t id = create_fake_sweep(store, 1);
    store.start(id);
    store.record_item(id, "token_embd.weight", "Q8_0", {{"kld", 1}});
    store.put_artifact(id, {"recipe", true, "{}"});
    EXPECT_THAT(error_of([&] { store.remove(id); }), HasSubstr("cancel it first"));
    store.remove(id, /*force=*/true);
    EXPECT_FALSE(store.find_job(id));
    EXPECT_TRUE(store.should_stop(id));  // its runner, if any, stops
    EXPECT_EQ(store.list_jobs().size(), 1u);
    EXPECT_EQ(store.units(keep).size(), 5u);
    // A new job never reuses the removed id (AUTOINCREMENT), so old references stay dead.
    EXPECT_GT(create_fake_sweep(store, 1), id);
}

TEST(Store, ConcurrentThreadsRecordEveryItemOnce) {
    Store store(fresh_dir("store") + "/jobs.sqlite");
    const int64_t id = create_fake_sweep(store, 3);
    const auto items = store.pending_items(id);
    std::vector<std::thread> threads;
    std::atomic<int> recorded{0};
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            // Every thread tries every item from a different start: each lands once.
            for (size_t k = 0; k < items.size(); ++k) {
                const WorkItem& w = items[(k + static_cast<size_t>(t) * 7) % items.size()];
                if (store.record_item(id, w.unit, w.type, fake_metrics(w.unit, w.type))) recorded++;
            }
        });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(recorded.load(), static_cast<int>(items.size()));
    EXPECT_EQ(store.get_job(id).progress_done, static_cast<int64_t>(items.size()));
    EXPECT_EQ(store.measurements(id).size(), items.size() * 5);
}

TEST(Store, InputHashesDetectAChangedModel) {
    Store store(fresh_dir("store") + "/jobs.sqlite");
    const int64_t id = create_fake_sweep(store, 1);
    store.check_inputs(id, "00112233aabbccdd", "ffeeddcc44556677");
    store.check_inputs(id, "", "");
    EXPECT_THAT(error_of([&] { store.check_inputs(id, "0000000000000000", ""); }),
                HasSubstr("job 1: the model 'llama-8m' changed on disk since the job started"));
    EXPECT_THAT(error_of([&] { store.check_inputs(id, "", "1"); }),
                HasSubstr("evaluation text changed"));
}

TEST(Runner, RunJobFinishesPausesOrFailsTheJob) {
    Store store(fresh_dir("runner") + "/jobs.sqlite");
    const int64_t done = create_fake_sweep(store, 1);
    store.start(done);
    EXPECT_EQ(run_job(store, done, [&] { return run_fake_items(store, done); }), JobState::done);
    EXPECT_EQ(store.get_job(done).state, JobState::done);

    const int64_t paused = create_fake_sweep(store, 1);
    store.start(paused);
    int n = 0;
    const JobState st = run_job(store, paused, [&] {
        for (const WorkItem& w : store.pending_items(paused)) {
            if (store.should_stop(paused)) return false;
            store.record_item(paused, w.unit, w.type, fake_metrics(w.unit, w.type));
            if (++n == 3) store.pause(paused);  // as `jobs pause` from another process
        }
        return true;
    });
    EXPECT_EQ(st, JobState::paused);
    EXPECT_EQ(store.item_counts(paused).done, 3);

    const int64_t failed = create_fake_sweep(store, 1);
    store.start(failed);
    EXPECT_THROW(run_job(store, failed, []() -> bool { fail("model.gguf: truncated"); }), Error);
    EXPECT_EQ(store.get_job(failed).state, JobState::failed);
    EXPECT_EQ(store.get_job(failed).error, "model.gguf: truncated");

    // Ctrl-C during a job pauses it at the next item.
    const int64_t interrupted = create_fake_sweep(store, 1);
    store.start(interrupted);
    EXPECT_EQ(run_job(store, interrupted,
                      [&] {
                          ::raise(SIGINT);
                          return run_fake_items(store, interrupted);
                      }),
              JobState::paused);
    EXPECT_EQ(store.get_job(interrupted).message, "paused by a signal (Ctrl-C)");
    EXPECT_FALSE(stop_signal_received());
}

TEST(Runner, RegistryFindsRunnersByKind) {
    EXPECT_EQ(find_job_runner(JobKind::audit), nullptr);
    register_job_runner(JobKind::audit, [](Store&, int64_t id) { return static_cast<int>(id); });
    const JobRunner* r = find_job_runner(JobKind::audit);
    ASSERT_NE(r, nullptr);
    Store store(fresh_dir("runner") + "/jobs.sqlite");
    EXPECT_EQ((*r)(store, 7), 7);
}

TEST(Store, DefaultPathHonoursTheEnvironment) {
    setenv("QUANTLENS_STORE", "/tmp/x/jobs.sqlite", 1);
    EXPECT_EQ(default_store_path(), "/tmp/x/jobs.sqlite");
    EXPECT_EQ(resolve_store_path("/a/b.sqlite"), "/a/b.sqlite");
    unsetenv("QUANTLENS_STORE");
    setenv("XDG_CACHE_HOME", "/c", 1);
    EXPECT_EQ(default_store_path(), "/c/quantlens/jobs.sqlite");
    unsetenv("XDG_CACHE_HOME");
    setenv("HOME", "/home/u", 1);
    EXPECT_EQ(resolve_store_path(""), "/home/u/.cache/quantlens/jobs.sqlite");
}
