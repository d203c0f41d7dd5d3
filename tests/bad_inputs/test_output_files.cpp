// Issue 20, items 1 and 2 (data loss), one test per reproduction against the built binary:
//  1. every command that writes a file refused nothing (only quantize had --force), and the
//     web server's calibrate job wrote wherever `output` pointed, a model's config.json too;
//  2. every writer used the one temporary name OUT.tmp, opened without O_EXCL and following
//     symlinks: two forced runs raced into one file, a planted OUT.tmp symlink redirected
//     the write, and a killed run left OUT.tmp behind.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "jobs/store.h"
#include "server/server.h"
#include "support/cli_run.h"
#include "support/running_server.h"

extern char** environ;

namespace fs = std::filesystem;
using namespace quantlens;
using namespace quantlens::cli_testing;

namespace {

const std::string kPrecious = "precious bytes that must survive\n";

using test_support::put;
using test_support::slurp;

// Temporaries of any writer, ours (.qltmp.) or the old scheme's (.tmp).
std::vector<std::string> temps(const fs::path& dir) {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) {
        const std::string n = e.path().filename().string();
        if (contains(n, ".qltmp.") || n.ends_with(".tmp")) out.push_back(n);
    }
    return out;
}

std::string model() {
    return shared_path("models/llama-8m");
}
std::string text() {
    return shared_path("data/eval.txt");
}

// `ARGS` must refuse the existing `target` naming it and leave it byte-identical; `ARGS
// --force` must replace it.
void expect_refused_then_forced(const std::string& args, const fs::path& target) {
    put(target, kPrecious);
    Result r = run_quiet(args);
    EXPECT_EQ(r.code, 1) << args << "\n" << r.out;
    EXPECT_TRUE(contains(r.out, target.string())) << "the refusal must name the file: " << r.out;
    EXPECT_TRUE(contains(r.out, "--force")) << r.out;
    EXPECT_EQ(slurp(target), kPrecious) << args;
    r = run_quiet(args + " --force");
    EXPECT_EQ(r.code, 0) << args << " --force\n" << r.out;
    EXPECT_NE(slurp(target), kPrecious) << args << " --force did not write";
    EXPECT_TRUE(temps(target.parent_path()).empty());
}

std::string small_sweep(const std::string& types) {
    return "sweep " + model() + " --eval " + text() + " --tokens 128 --ctx 128 --types " + types +
           " --granularity class";
}

// A store holding one small sweep job (id 1), made once for the tests that need a job.
const std::string& sweep_store() {
    static const std::string path = [] {
        const fs::path dir =
            fs::path(QL_TEST_TMP) / ("output-files-store-" + std::to_string(::getpid()));
        fs::remove_all(dir);
        fs::create_directories(dir);
        const std::string store = (dir / "jobs.sqlite").string();
        const Result r = run_quiet(small_sweep("Q8_0,Q4_K") + " --store " + store);
        EXPECT_EQ(r.code, 0) << r.out;
        return store;
    }();
    return path;
}

// The built binary as a child whose PID we know (no shell between), output discarded.
pid_t spawn_quantlens(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {QL_BINARY_DIR "/quantlens"};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, cargv[0], &fa, nullptr, cargv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    return rc == 0 ? pid : -1;
}

// Starts a quantize into dir/out.gguf, waits until its temporary exists (the file is being
// written) and sends `sig`. False when the run finished before it could be caught.
bool kill_quantize_mid_write(const fs::path& dir, int sig) {
    const pid_t pid = spawn_quantlens({"-q", "quantize", model(), "--preset", "Q2_K", "--imatrix",
                                       shared_path("data/llama-8m.llamacpp-imatrix.dat"), "-o",
                                       (dir / "out.gguf").string()});
    if (pid < 0) return false;
    bool caught = false;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!caught && std::chrono::steady_clock::now() < deadline) {
        if (!temps(dir).empty()) {
            ::kill(pid, sig);
            caught = true;
            break;
        }
        int status = 0;
        if (::waitpid(pid, &status, WNOHANG) == pid) return false;
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return caught && WIFSIGNALED(status) && WTERMSIG(status) == sig;
}

}  // namespace

// ---- 1. outputs overwrite anything ------------------------------------------------------

TEST(OutputsOverwriteAnything, QuantizeOutputAndSavedRecipe) {
    const fs::path dir = fresh_dir("ow-quantize");
    const std::string base = "quantize " + model() + " --preset Q8_0 --summary";
    expect_refused_then_forced(base + " -o " + (dir / "q.gguf").string(), dir / "q.gguf");
    fs::remove(dir / "q.gguf");
    expect_refused_then_forced(
        base + " -o " + (dir / "q2.gguf").string() + " --save-recipe " + (dir / "r.json").string(),
        dir / "r.json");
}

TEST(OutputsOverwriteAnything, CalibrateOutput) {
    const fs::path dir = fresh_dir("ow-calibrate");
    for (const char* name : {"imatrix.dat", "imatrix.gguf"})
        expect_refused_then_forced("calibrate " + model() + " --text " + text() +
                                       " --ctx 128 --chunks 1 -o " + (dir / name).string(),
                                   dir / name);
}

TEST(OutputsOverwriteAnything, EvalSaveLogits) {
    const fs::path dir = fresh_dir("ow-eval");
    expect_refused_then_forced("eval " + model() + " --text " + text() +
                                   " --ctx 128 --chunks 1 --save-logits " +
                                   (dir / "base.qllogp").string(),
                               dir / "base.qllogp");
}

TEST(OutputsOverwriteAnything, ReportOutput) {
    const fs::path dir = fresh_dir("ow-report");
    // --json: the same writer as the HTML page, without needing Plotly in the build.
    expect_refused_then_forced(
        "report 1 --json --store " + sweep_store() + " -o " + (dir / "report.json").string(),
        dir / "report.json");
}

TEST(OutputsOverwriteAnything, PlanOutputAndExports) {
    const fs::path dir = fresh_dir("ow-plan");
    const std::string base = "plan 1 --knee --store " + sweep_store();
    expect_refused_then_forced(base + " -o " + (dir / "recipe.json").string(), dir / "recipe.json");
    expect_refused_then_forced(base + " --frontier " + (dir / "frontier.json").string(),
                               dir / "frontier.json");
    // --export-gptq from a GPTQ plan: tests/cli/test_gptq.cpp (a ggml plan is refused).
    expect_refused_then_forced(base + " --export-llama-cpp " + (dir / "mix").string(),
                               dir / "mix.sh");
    fs::remove(dir / "mix.sh");
    expect_refused_then_forced(base + " --export-llama-cpp " + (dir / "mix").string(),
                               dir / "mix.tensor-types.txt");
}

TEST(OutputsOverwriteAnything, SweepJson) {
    const fs::path dir = fresh_dir("ow-sweep");
    // Refused before the sweep starts; the forced run measures in a store of its own.
    expect_refused_then_forced(small_sweep("Q8_0") + " --store " + (dir / "jobs.sqlite").string() +
                                   " --json " + (dir / "m.json").string(),
                               dir / "m.json");
}

// ---- 2. one shared temp name -------------------------------------------------------------

TEST(OneSharedTempName, SymlinkAtAnOldTempNameIsNotFollowed) {
    const fs::path dir = fresh_dir("tmp-symlink");
    put(dir / "victim", kPrecious);
    for (const char* out : {"out.gguf", "r.json", "imatrix.dat"})
        fs::create_symlink(dir / "victim", dir / (std::string(out) + ".tmp"));
    Result r =
        run_quiet("quantize " + model() + " --preset Q8_0 --summary -o " +
                  (dir / "out.gguf").string() + " --save-recipe " + (dir / "r.json").string());
    ASSERT_EQ(r.code, 0) << r.out;
    r = run_quiet("calibrate " + model() + " --text " + text() + " --ctx 128 --chunks 1 -o " +
                  (dir / "imatrix.dat").string());
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_EQ(slurp(dir / "victim"), kPrecious);
    for (const char* out : {"out.gguf", "r.json", "imatrix.dat"}) {
        EXPECT_TRUE(fs::is_symlink(dir / (std::string(out) + ".tmp"))) << out;
        EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(dir / out))) << out;
    }
}

TEST(OneSharedTempName, SigtermedQuantizeLeavesNoTemp) {
    const fs::path dir = fresh_dir("tmp-sigterm");
    bool caught = false;
    for (int attempt = 0; attempt < 5 && !caught; ++attempt) {
        fs::remove(dir / "out.gguf");
        caught = kill_quantize_mid_write(dir, SIGTERM);
        EXPECT_TRUE(temps(dir).empty()) << temps(dir).front();
    }
    ASSERT_TRUE(caught) << "quantize always finished before it could be signalled";
    EXPECT_FALSE(fs::exists(dir / "out.gguf")) << "a partial output was left";
}

TEST(OneSharedTempName, StaleTempOfAKilledRunIsRemovedAndReportedByTheNextRun) {
    const fs::path dir = fresh_dir("tmp-sigkill");
    bool caught = false;
    for (int attempt = 0; attempt < 5 && !caught; ++attempt) {
        fs::remove(dir / "out.gguf");
        for (const auto& t : temps(dir)) fs::remove(dir / t);
        caught = kill_quantize_mid_write(dir, SIGKILL);
    }
    ASSERT_TRUE(caught) << "quantize always finished before it could be killed";
    const std::vector<std::string> left = temps(dir);
    ASSERT_EQ(left.size(), 1u)
        << "kill -9 cannot be caught: the temporary stays until the next run";
    EXPECT_FALSE(fs::exists(dir / "out.gguf"));

    const Result r = run_quiet("quantize " + model() + " --preset Q8_0 --summary -o " +
                               (dir / "out.gguf").string());
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_TRUE(contains(r.out, left[0])) << "the removal must be reported: " << r.out;
    EXPECT_TRUE(temps(dir).empty());
}

TEST(OneSharedTempName, TwoConcurrentForcedQuantizesLeaveOneWholeFile) {
    const fs::path dir = fresh_dir("tmp-race");
    const std::string q8 = (dir / "q8.gguf").string(), q4 = (dir / "q4.gguf").string();
    ASSERT_EQ(run_quiet("quantize " + model() + " --preset Q8_0 --summary -o " + q8).code, 0);
    ASSERT_EQ(run_quiet("quantize " + model() + " --preset Q4_K_M --summary -o " + q4).code, 0);
    const std::string a = slurp(q8), b = slurp(q4);
    ASSERT_NE(a, b);
    const std::string same = (dir / "same.gguf").string();
    for (int round = 0; round < 2; ++round) {
        const pid_t p1 =
            spawn_quantlens({"-q", "quantize", model(), "--preset", "Q8_0", "--force", "-o", same});
        const pid_t p2 = spawn_quantlens(
            {"-q", "quantize", model(), "--preset", "Q4_K_M", "--force", "-o", same});
        ASSERT_GT(p1, 0);
        ASSERT_GT(p2, 0);
        int s1 = 0, s2 = 0;
        ::waitpid(p1, &s1, 0);
        ::waitpid(p2, &s2, 0);
        EXPECT_TRUE(WIFEXITED(s1) && WEXITSTATUS(s1) == 0);
        EXPECT_TRUE(WIFEXITED(s2) && WEXITSTATUS(s2) == 0);
        const std::string got = slurp(same);
        EXPECT_TRUE(got == a || got == b)
            << "round " << round << ": a mixed or partial file of " << got.size() << " bytes";
        EXPECT_TRUE(temps(dir).empty());
    }
}

// ---- the server writes only into its own output folder ----------------------------------

TEST(OutputsOverwriteAnything, ServerCalibrateJobWritesOnlyIntoItsOutputFolder) {
    const fs::path dir = fresh_dir("server-outputs");
    fs::create_directories(dir / "root");
    // A private copy of the model, so an escape would damage nothing shared.
    fs::copy(model(), dir / "root" / "llama-8m", fs::copy_options::recursive);
    fs::copy_file(text(), dir / "root" / "eval.txt");
    const fs::path config = dir / "root" / "llama-8m" / "config.json";
    const std::string config_before = slurp(config);

    server::ServerOptions o;
    o.store_path = (dir / "jobs.sqlite").string();
    o.model_roots = {(dir / "root").string()};
    o.job_exe = QL_BINARY_DIR "/quantlens";
    o.threads = 4;
    o.max_event_streams = 2;  // at most half the threads
    const test_support::RunningServer srv(o);
    httplib::Client c = srv.client(30);
    auto calibrate = [&](const std::string& output) {
        const nlohmann::json body = {
            {"kind", "calibrate"},
            {"model", "llama-8m"},
            {"options", {{"text", "eval.txt"}, {"output", output}, {"ctx", 128}, {"chunks", 1}}}};
        return c.Post("/api/jobs", body.dump(), "application/json");
    };

    for (const char* bad : {"llama-8m/config.json", "../escape.dat", "/tmp/abs.dat", ".hidden"}) {
        const auto r = calibrate(bad);
        ASSERT_TRUE(r) << bad;
        EXPECT_EQ(r->status, 400) << bad << ": " << r->body;
    }
    EXPECT_EQ(slurp(config), config_before);
    EXPECT_FALSE(fs::exists(dir / "escape.dat"));

    auto r = calibrate("imatrix.dat");
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->status == 200 || r->status == 202) << r->status << ": " << r->body;
    const fs::path written = dir / "jobs.sqlite.outputs" / "imatrix.dat";
    for (int i = 0; i < 600 && !fs::exists(written); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_TRUE(fs::exists(written)) << "the output folder is <store>.outputs";
    EXPECT_FALSE(fs::exists(dir / "root" / "imatrix.dat"));
    EXPECT_FALSE(fs::exists(dir / "root" / "llama-8m" / "imatrix.dat"));

    const std::string first = slurp(written);
    r = calibrate("imatrix.dat");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 409) << r->body;
    EXPECT_EQ(slurp(written), first);
}
