// `mpirun -np 2 quantlens sweep … --mpi` (built only with -DQUANTLENS_MPI=ON): on llama-8m it
// gives the single-process sweep's numbers for the same unit × type set; with a worker that
// dies holding an item (QUANTLENS_MPI_TEST_KILL) it still completes with the same numbers;
// a run stopped by SIGTERM resumes from the store without measuring done items again.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>
#include <tuple>

#include "jobs/store.h"
#include "support/test_data.h"

namespace quantlens {
namespace {

using quantlens::test_support::scratch_dir;
using quantlens::test_support::shared_dir;

using json = nlohmann::json;
using Key = std::tuple<std::string, std::string, std::string>;

// One thread per rank: the CPU engine's sums depend on the thread count, and the machine
// running the tests may have two cores.
std::string sweep_args(const std::string& store) {
    return std::string(QL_BINARY_DIR) + "/quantlens -t 1 sweep " + shared_dir() +
           "/models/llama-8m --eval " + shared_dir() +
           "/data/eval.txt --tokens 512 --ctx 256 --types Q4_K,Q2_K --granularity layer --store " +
           store;
}

std::string mpirun(int np, const std::string& extra = "") {
    return "mpirun -np " + std::to_string(np) + " --oversubscribe --allow-run-as-root " + extra +
           " ";
}

int shell(const std::string& cmd, const std::string& log) {
    const int status = std::system((cmd + " > " + log + " 2>&1").c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string slurp(const std::string& path) {
    std::ifstream f(path);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

// Every measurement but the wall time, from the only job of a store.
std::map<Key, double> numbers(const std::string& store_path, int64_t* id_out = nullptr) {
    jobs::Store store(store_path);
    const auto jobs = store.list_jobs();
    EXPECT_EQ(jobs.size(), 1u);
    if (jobs.empty()) return {};
    if (id_out) *id_out = jobs[0].id;
    EXPECT_EQ(jobs[0].state, jobs::JobState::done) << store_path;
    std::map<Key, double> out;
    for (const auto& m : store.measurements(jobs[0].id))
        if (m.metric != "seconds") out[{m.unit, m.type, m.metric}] = m.value;
    return out;
}

void expect_same(const std::map<Key, double>& got, const std::map<Key, double>& want) {
    EXPECT_EQ(got.size(), want.size());
    size_t differ = 0;
    for (const auto& [key, value] : want) {
        auto it = got.find(key);
        if (it == got.end() ||
            !(it->second == value || (std::isnan(value) && std::isnan(it->second)))) {
            if (++differ <= 5)
                ADD_FAILURE() << std::get<0>(key) << " / " << std::get<1>(key) << " / "
                              << std::get<2>(key) << ": "
                              << (it == got.end() ? std::string("missing")
                                                  : std::to_string(it->second))
                              << " vs " << value;
        }
    }
    EXPECT_EQ(differ, 0u);
}

json mpi_artifact(const std::string& store_path, int64_t id) {
    jobs::Store store(store_path);
    const auto a = store.get_artifact(id, "mpi");
    EXPECT_TRUE(a.has_value());
    return a ? json::parse(a->data) : json::object();
}

// The single-process sweep every MPI run is compared with (measured once per process).
const std::map<Key, double>& reference_numbers() {
    static const std::map<Key, double> ref = [] {
        const std::string dir = scratch_dir("sweep-mpi-single");
        EXPECT_EQ(shell(sweep_args(dir + "/s.sqlite"), dir + "/log"), 0) << slurp(dir + "/log");
        return numbers(dir + "/s.sqlite");
    }();
    return ref;
}

TEST(SweepMpi, TwoRanksEqualOneProcess) {
    const auto& want = reference_numbers();
    ASSERT_GT(want.size(), 22u * 20);  // 22 items, ~25 metrics each
    const std::string dir = scratch_dir("sweep-mpi-np2");
    const std::string store = dir + "/m.sqlite";
    ASSERT_EQ(shell(mpirun(2) + sweep_args(store) + " --mpi", dir + "/log"), 0)
        << slurp(dir + "/log");
    int64_t id = 0;
    expect_same(numbers(store, &id), want);
    const json a = mpi_artifact(store, id);
    EXPECT_EQ(a.value("ranks", 0), 2);
    int64_t items = 0;
    for (const auto& w : a.at("workers")) items += w.at("items").get<int64_t>();
    EXPECT_EQ(items, 22);
}

TEST(SweepMpi, AWorkerThatDiesLosesOnlyItsItem) {
    const auto& want = reference_numbers();
    const std::string dir = scratch_dir("sweep-mpi-kill");
    const std::string store = dir + "/m.sqlite";
    // Rank 1 kills itself (SIGKILL) when its third item arrives; --enable-recovery keeps
    // mpirun from taking rank 0 down with it.
    const std::string cmd = "QUANTLENS_MPI_TEST_KILL=1:2 " +
                            mpirun(2, "--enable-recovery -x QUANTLENS_MPI_TEST_KILL") +
                            sweep_args(store) + " --mpi --mpi-timeout 4 --mpi-heartbeat 0.5";
    EXPECT_EQ(shell(cmd, dir + "/log"), 0) << slurp(dir + "/log");
    const std::string log = slurp(dir + "/log");
    EXPECT_THAT(log, ::testing::HasSubstr("dying with item 2"));
    EXPECT_THAT(log, ::testing::HasSubstr("rank 1 silent"));
    int64_t id = 0;
    expect_same(numbers(store, &id), want);
    const json a = mpi_artifact(store, id);
    ASSERT_EQ(a.at("workers").size(), 2u);
    EXPECT_TRUE(a.at("workers")[1].at("lost").get<bool>());
    EXPECT_EQ(a.at("workers")[1].at("items").get<int64_t>(), 2);  // the two it finished
}

TEST(SweepMpi, AStoppedRunResumesFromTheStore) {
    const auto& want = reference_numbers();
    const std::string dir = scratch_dir("sweep-mpi-resume");
    const std::string store = dir + "/m.sqlite";
    const std::string cmd =
        "exec " + mpirun(2) + sweep_args(store) + " --mpi > " + dir + "/log1 2>&1";
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
        _exit(127);
    }
    // Stop it (as scancel or Ctrl-C would) once a few items are in the store.
    int64_t done = 0;
    const auto start = std::chrono::steady_clock::now();
    while (done < 4 && std::chrono::steady_clock::now() - start < std::chrono::seconds(50)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        if (!std::filesystem::exists(store)) continue;
        jobs::Store s(store);
        const auto jobs = s.list_jobs();
        if (!jobs.empty()) done = s.item_counts(jobs[0].id).done;
    }
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
    std::map<std::pair<std::string, std::string>, double> seconds_before;
    int64_t id = 0;
    {
        jobs::Store s(store);
        const auto jobs = s.list_jobs();
        ASSERT_EQ(jobs.size(), 1u) << slurp(dir + "/log1");
        id = jobs[0].id;
        const auto counts = s.item_counts(id);
        ASSERT_GE(counts.done, 4) << slurp(dir + "/log1");
        ASSERT_LT(counts.done, 22) << "finished before it could be stopped";
        for (const auto& m : s.measurements(id, "", "seconds"))
            seconds_before[{m.unit, m.type}] = m.value;
    }
    ASSERT_EQ(
        shell(mpirun(2) + sweep_args(store) + " --mpi --job " + std::to_string(id), dir + "/log2"),
        0)
        << slurp(dir + "/log1") << slurp(dir + "/log2");
    expect_same(numbers(store), want);
    // Items done before the stop were not measured again.
    jobs::Store s(store);
    for (const auto& m : s.measurements(id, "", "seconds")) {
        auto it = seconds_before.find({m.unit, m.type});
        if (it != seconds_before.end()) {
            EXPECT_EQ(m.value, it->second) << m.unit << " " << m.type;
        }
    }
}

}  // namespace
}  // namespace quantlens
