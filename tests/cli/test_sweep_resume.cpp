// A real sweep killed with SIGKILL at a random moment and finished by `quantlens jobs resume`
// gives exactly the measurements of an uninterrupted run, and never measures an item twice:
// llama-8m, 2 types × 58 tensors + the "(all)" items, 256 evaluation tokens. Also: resuming
// after the evaluation text changed on disk is refused with a message naming the job.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <thread>

#include "support/cli_run.h"
#include "jobs/store.h"

using namespace quantlens::jobs;
using ::testing::HasSubstr;

namespace {

namespace fs = std::filesystem;
using namespace quantlens::cli_testing;

const std::string kModel = QL_SHARED_DIR "/models/llama-8m";
const std::string kEval = QL_SHARED_DIR "/data/eval.txt";
constexpr int64_t kItems = 2 * 58 + 2;  // per-tensor items and one "(all)" per type

std::vector<std::string> sweep_args(const std::string& store, const std::string& eval) {
    return {"-q",    "sweep", kModel,    "--eval",    eval,      "--tokens", "256",
            "--ctx", "128",   "--types", "Q4_K,Q8_0", "--store", store};
}

// Starts `quantlens ARGS` as a child process (stdout/stderr to LOG); returns its pid.
pid_t spawn_cli(const std::vector<std::string>& args, const std::string& log) {
    const pid_t pid = fork();
    if (pid == 0) {
        std::FILE* f = std::freopen(log.c_str(), "w", stdout);
        if (f == nullptr || dup2(fileno(stdout), 2) < 0) _exit(127);
        std::vector<char*> argv;
        std::string exe = QL_BINARY_DIR "/quantlens";
        argv.push_back(exe.data());
        std::vector<std::string> copy = args;
        for (auto& a : copy) argv.push_back(a.data());
        argv.push_back(nullptr);
        execv(exe.c_str(), argv.data());
        _exit(127);
    }
    return pid;
}

// Items committed so far (0 while the store or the job does not exist yet).
int64_t items_done(const std::string& store_path) {
    if (!fs::exists(store_path)) return 0;
    try {
        Store store(store_path);
        const auto all = store.list_jobs();
        return all.empty() ? 0 : all.front().progress_done;
    } catch (const std::exception&) {
        return 0;  // being created by the child
    }
}

// True once the child's log says the job exists (the store is created and in WAL mode).
bool job_announced(const std::string& log) {
    std::ifstream f(log);
    const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    return text.find("sweep: job") != std::string::npos;
}

// SIGKILLs the child once at least `after` items are committed (or when it ends by itself).
// Returns true when it was killed mid-job. With `log`, the store is only read once the child
// has announced its job: opening a store while another process creates it can starve the
// creator's switch to WAL mode.
bool kill_after(pid_t pid, const std::string& store_path, int64_t after,
                const std::string& log = "") {
    for (;;) {
        int status = 0;
        if (waitpid(pid, &status, WNOHANG) == pid) return false;
        if ((log.empty() || job_announced(log)) && items_done(store_path) >= after) {
            ::kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

// Every measurement but the item's wall time, keyed by (unit, type, metric).
using Values = std::map<std::tuple<std::string, std::string, std::string>, double>;
Values values_of(const std::string& store_path, int64_t id) {
    Store store(store_path);
    Values v;
    for (const Measurement& m : store.measurements(id))
        if (m.metric != "seconds") v[{m.unit, m.type, m.metric}] = m.value;
    return v;
}

}  // namespace

TEST(CliSweepResume, KillNineThenJobsResumeGivesTheUninterruptedResults) {
    const std::string dir = fresh_dir("cli-sweep-resume");
    const std::string ref_store = dir + "/ref.sqlite", store = dir + "/killed.sqlite";

    std::string line;
    for (const auto& a : sweep_args(ref_store, kEval)) line += " '" + a + "'";
    const Result r = run_cli(line);
    ASSERT_EQ(r.code, 0) << r.out;
    const Values expected = values_of(ref_store, 1);
    ASSERT_EQ(Store(ref_store).get_job(1).progress_done, kItems);

    // Two kills at random moments (the second one interrupts the resumed run), then resume.
    std::mt19937 rng(std::random_device{}());
    const int64_t first = std::uniform_int_distribution<int64_t>(1, kItems / 2)(rng);
    const int64_t second = std::uniform_int_distribution<int64_t>(first + 1, kItems - 5)(rng);
    SCOPED_TRACE("killed after " + std::to_string(first) + " and " + std::to_string(second) +
                 " items");
    ASSERT_TRUE(kill_after(spawn_cli(sweep_args(store, kEval), dir + "/run1.log"), store, first,
                           dir + "/run1.log"))
        << "the sweep finished before it could be killed";
    const int64_t at_first_kill = items_done(store);
    EXPECT_GE(at_first_kill, first);
    EXPECT_LT(at_first_kill, kItems);
    {
        Store s(store);
        EXPECT_EQ(s.get_job(1).state, JobState::running);  // as SIGKILL left it
    }
    ASSERT_TRUE(
        kill_after(spawn_cli({"-q", "jobs", "resume", "1", "--store", store}, dir + "/run2.log"),
                   store, second))
        << "the resumed sweep finished before it could be killed";
    EXPECT_GE(items_done(store), second);

    const Result done = run_cli("-q jobs resume 1 --store '" + store + "'");
    ASSERT_EQ(done.code, 0) << done.out;
    Store s(store);
    const Job job = s.get_job(1);
    EXPECT_EQ(job.state, JobState::done);
    EXPECT_EQ(job.progress_done, kItems);
    EXPECT_TRUE(s.pending_items(1).empty());

    // Bit-identical values: an item depends only on (options, unit, type, threads).
    const Values got = values_of(store, 1);
    EXPECT_EQ(got.size(), expected.size());
    int64_t mismatches = 0;
    for (const auto& [key, value] : expected) {
        const auto it = got.find(key);
        if (it == got.end() || it->second != value) {
            if (++mismatches <= 5)
                ADD_FAILURE() << std::get<0>(key) << " " << std::get<1>(key) << " "
                              << std::get<2>(key) << ": " << value << " vs "
                              << (it == got.end() ? std::string("missing")
                                                  : std::to_string(it->second));
        }
    }
    EXPECT_EQ(mismatches, 0);
}

TEST(CliSweepResume, ResumeRefusesWhenTheEvaluationTextChanged) {
    const std::string dir = fresh_dir("cli-sweep-resume");
    const std::string store = dir + "/jobs.sqlite", text = dir + "/eval.txt";
    fs::copy_file(kEval, text);
    ASSERT_TRUE(kill_after(spawn_cli(sweep_args(store, text), dir + "/run.log"), store, 1,
                           dir + "/run.log"));
    {
        std::ofstream f(text, std::ios::app);
        f << "\nOne more sentence changes the hash.\n";
    }
    const Result r = run_cli("-q jobs resume 1 --store '" + store + "'");
    EXPECT_NE(r.code, 0);
    EXPECT_THAT(r.out, HasSubstr("job 1: the evaluation text changed since the job started"));
    EXPECT_GT(Store(store).pending_items(1).size(), 0u);
}

TEST(CliSweepResume, UnknownJobAndCorruptStoreAreOneLineErrors) {
    const std::string dir = fresh_dir("cli-sweep-resume");
    const std::string store = dir + "/jobs.sqlite";
    Store(store).list_jobs();  // an empty, valid store
    Result r = run_cli("sweep --job 42 --store '" + store + "'");
    EXPECT_EQ(r.code, 1);
    EXPECT_THAT(r.out, HasSubstr("42"));
    // --gpu reaches the job: a build without CUDA (CI) refuses it instead of silently
    // measuring on the CPU; a CUDA build on a machine without a GPU names the CUDA error.
    r = run_cli("-q sweep " + kModel + " --eval " + kEval +
                " --tokens 256 --ctx 128 --types Q8_0 --gpu --store '" + store + "'");
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_THAT(r.out, HasSubstr("CUDA"));
    const std::string bad = dir + "/bad.sqlite";
    std::ofstream(bad) << "this is not an SQLite database, just text long enough to be read";
    r = run_cli("sweep " + kModel + " --eval " + kEval + " --store '" + bad + "'");
    EXPECT_EQ(r.code, 1);
    EXPECT_THAT(r.out, HasSubstr("bad.sqlite"));
}
