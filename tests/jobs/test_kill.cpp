// kill -9 at a random moment: a child process records items in a loop and is SIGKILLed; the
// parent reopens the store and checks that every item is either done with all of its metrics
// (exact values) or pending with none, that progress agrees, and that resuming until the end
// gives exactly the measurements of an uninterrupted run.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <random>
#include <thread>

#include "jobs/runner.h"
#include "jobs_test_util.h"

using namespace quantlens::jobs;
using namespace quantlens::jobs::testing;

namespace {

constexpr int kLayers = 8;  // 33 units × 8 types = 264 items of 5 metrics

// The child: continue the job wherever it stands (fresh, or interrupted by the previous
// kill), tell the parent once the first item is committed, then record the rest.
[[noreturn]] void child_main(const std::string& path, int64_t id, int ready_fd) {
    try {
        Store store(path);
        Job job = store.get_job(id);
        if (job.state != JobState::queued) store.resume(id);
        store.start(id);
        bool told = false;
        for (const WorkItem& w : store.pending_items(id)) {
            store.record_item(id, w.unit, w.type, fake_metrics(w.unit, w.type));
            if (!told) {
                const char c = 1;
                if (::write(ready_fd, &c, 1) != 1) _exit(3);
                told = true;
            }
        }
        store.finish(id);
        if (!told) {
            const char c = 1;
            if (::write(ready_fd, &c, 1) != 1) _exit(3);
        }
    } catch (...) {
        _exit(2);
    }
    _exit(0);
}

// Every item is all-or-nothing, with the values it was measured with.
void check_consistent(Store& store, int64_t id, int64_t* done_out) {
    std::map<std::pair<std::string, std::string>, Metrics> got;
    for (const Measurement& m : store.measurements(id)) got[{m.unit, m.type}][m.metric] = m.value;
    int64_t done = 0;
    for (const WorkItem& w : store.work_items(id)) {
        auto it = got.find({w.unit, w.type});
        if (store.is_done(id, w.unit, w.type)) {
            ++done;
            ASSERT_NE(it, got.end()) << w.unit << " " << w.type << " done without metrics";
            EXPECT_EQ(it->second, fake_metrics(w.unit, w.type)) << w.unit << " " << w.type;
        } else {
            EXPECT_EQ(it, got.end()) << w.unit << " " << w.type << " pending with metrics";
        }
    }
    EXPECT_EQ(got.size(), static_cast<size_t>(done)) << "measurements of unknown items";
    EXPECT_EQ(store.get_job(id).progress_done, done);
    EXPECT_EQ(store.item_counts(id).done, done);
    *done_out = done;
}

}  // namespace

TEST(KillNine, EveryItemIsAllOrNothingAndResumeMatchesAnUninterruptedRun) {
    const std::string dir = fresh_dir("kill");
    // Reference: one uninterrupted run.
    std::vector<Measurement> reference;
    {
        Store ref(dir + "/reference.sqlite");
        const int64_t id = create_fake_sweep(ref, kLayers);
        ref.start(id);
        ASSERT_EQ(run_job(ref, id, [&] { return run_fake_items(ref, id); }), JobState::done);
        reference = ref.measurements(id);
    }
    ASSERT_EQ(reference.size(), 33u * 8 * 5);

    const std::string path = dir + "/killed.sqlite";
    int64_t id = 0;
    int64_t total = 0;
    {
        Store store(path);
        id = create_fake_sweep(store, kLayers);
        total = store.item_counts(id).total;
    }
    const unsigned seed = std::random_device{}();
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    int mid_job_kills = 0;
    int64_t done = 0;
    for (int round = 0; round < 12 && done < total; ++round) {
        int fds[2];
        ASSERT_EQ(pipe(fds), 0);
        const pid_t child = fork();
        ASSERT_GE(child, 0);
        if (child == 0) {
            close(fds[0]);
            child_main(path, id, fds[1]);
        }
        close(fds[1]);
        char c = 0;
        ASSERT_EQ(read(fds[0], &c, 1), 1) << "child failed before its first item";
        close(fds[0]);
        // Random moment within the next few milliseconds (a whole run takes ~10 ms or more).
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 3000));
        kill(child, SIGKILL);
        int status = 0;
        waitpid(child, &status, 0);

        Store store(path);
        const int64_t before = done;
        check_consistent(store, id, &done);
        if (::testing::Test::HasFailure()) return;
        EXPECT_GE(done, before + 1);  // the child committed at least its first item
        if (WIFSIGNALED(status) && done < total) {
            ++mid_job_kills;
            const Job job = store.get_job(id);
            EXPECT_EQ(job.state, JobState::running);
            EXPECT_TRUE(job.interrupted) << "a SIGKILLed owner must read as interrupted";
        }
    }
    EXPECT_GE(mid_job_kills, 1) << "no kill landed mid-job; the test proved nothing";
    std::printf("kill -9 rounds mid-job: %d\n", mid_job_kills);

    // Resume in this process until the end, as `quantlens jobs resume` would.
    Store store(path);
    if (store.get_job(id).state != JobState::done) {
        store.resume(id);
        store.start(id);
        ASSERT_EQ(run_job(store, id, [&] { return run_fake_items(store, id); }), JobState::done);
    }
    EXPECT_EQ(store.measurements(id), reference);
    EXPECT_EQ(store.item_counts(id).done, total);
    EXPECT_TRUE(store.pending_items(id).empty());
}
