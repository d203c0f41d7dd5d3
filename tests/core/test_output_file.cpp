// core/output_file.h: the one way quantlens writes a file (issue 20): refuse or replace,
// a private temporary never shared or followed, removed on error, on SIGTERM, and when
// left by a killed process.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/output_file.h"
#include "support/test_data.h"

namespace fs = std::filesystem;
using namespace quantlens;

namespace {

fs::path fresh(const std::string& name) {
    const fs::path dir =
        fs::path(QL_TEST_TMP) / ("output-file-" + name + "-" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    return dir;
}

using test_support::put;
using test_support::slurp;

// Every entry of `dir` that is one of our temporaries.
std::vector<std::string> temps(const fs::path& dir) {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir))
        if (e.path().filename().string().find(".qltmp.") != std::string::npos)
            out.push_back(e.path().filename().string());
    return out;
}

// A PID that surely does not run: a child that has exited and been reaped.
pid_t dead_pid() {
    const pid_t pid = ::fork();
    if (pid == 0) ::_exit(0);
    ::waitpid(pid, nullptr, 0);
    return pid;
}

}  // namespace

TEST(OutputFile, CommitWritesTheWholeFileAndLeavesNoTemporary) {
    const fs::path dir = fresh("commit");
    const fs::path out = dir / "a.bin";
    std::string big(3 << 20, 'x');  // past the buffer: the direct-write path too
    {
        OutputFile f(out.string(), Overwrite::refuse);
        EXPECT_EQ(fs::path(f.temp_path()).parent_path(), out.parent_path());
        EXPECT_EQ(fs::path(f.temp_path()).filename().string().rfind(".a.bin.qltmp.", 0), 0u)
            << f.temp_path();
        EXPECT_TRUE(fs::exists(f.temp_path()));
        EXPECT_FALSE(fs::exists(out)) << "nothing reaches the target before commit()";
        f.write("head:");
        f.write(big.data(), big.size());
        f.commit();
    }
    EXPECT_EQ(slurp(out), "head:" + big);
    EXPECT_TRUE(temps(dir).empty());
}

TEST(OutputFile, TwoWritersOfOneTargetNeverShareATemporary) {
    const fs::path dir = fresh("unique");
    OutputFile a((dir / "x").string(), Overwrite::replace);
    OutputFile b((dir / "x").string(), Overwrite::replace);
    EXPECT_NE(a.temp_path(), b.temp_path());
}

TEST(OutputFile, RefusesAnExistingFileAndLeavesItUntouched) {
    const fs::path dir = fresh("refuse");
    const fs::path out = dir / "keep.txt";
    put(out, "precious");
    try {
        OutputFile f(out.string(), Overwrite::refuse);
        FAIL() << "an existing file was accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(out.string()), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("--force"), std::string::npos) << e.what();
    }
    EXPECT_EQ(slurp(out), "precious");
    EXPECT_TRUE(temps(dir).empty());
    // A dangling symlink is an existing entry too.
    fs::create_symlink(dir / "nowhere", dir / "dangling");
    EXPECT_THROW(write_output_file((dir / "dangling").string(), "x", Overwrite::refuse), Error);
    EXPECT_FALSE(fs::exists(dir / "nowhere"));
}

TEST(OutputFile, ReplaceReplacesAFileAndASymlinkWithoutFollowingIt) {
    const fs::path dir = fresh("replace");
    put(dir / "old.txt", "old");
    write_output_file((dir / "old.txt").string(), "new", Overwrite::replace);
    EXPECT_EQ(slurp(dir / "old.txt"), "new");

    put(dir / "victim", "victim");
    fs::create_symlink(dir / "victim", dir / "link");
    write_output_file((dir / "link").string(), "mine", Overwrite::replace);
    EXPECT_EQ(slurp(dir / "victim"), "victim");
    EXPECT_FALSE(fs::is_symlink(dir / "link"));
    EXPECT_EQ(slurp(dir / "link"), "mine");

    fs::create_directory(dir / "folder");
    EXPECT_THROW(write_output_file((dir / "folder").string(), "x", Overwrite::replace), Error);
}

TEST(OutputFile, AFileThatAppearsWhileWritingIsNotReplaced) {
    const fs::path dir = fresh("appears");
    const fs::path out = dir / "race.txt";
    {
        OutputFile f(out.string(), Overwrite::refuse);
        f.write("mine");
        put(out, "theirs");  // another process finished first
        EXPECT_THROW(f.commit(), Error);
    }
    EXPECT_EQ(slurp(out), "theirs");
    EXPECT_TRUE(temps(dir).empty());
}

TEST(OutputFile, AnErrorBeforeCommitRemovesTheTemporary) {
    const fs::path dir = fresh("error");
    try {
        OutputFile f((dir / "half.bin").string(), Overwrite::refuse);
        f.write("partial");
        throw Error("producer failed");
    } catch (const Error&) {
    }
    EXPECT_FALSE(fs::exists(dir / "half.bin"));
    EXPECT_TRUE(temps(dir).empty());
    EXPECT_THROW(OutputFile((dir / "no-such-folder" / "x").string(), Overwrite::refuse), Error);
    EXPECT_THROW(check_output_path((dir / "no-such-folder" / "x").string(), Overwrite::refuse),
                 Error);
    EXPECT_NO_THROW(check_output_path("relative-name-in-cwd", Overwrite::refuse));
}

TEST(OutputFile, AStaleTemporaryOfADeadProcessIsRemovedAndNamed) {
    const fs::path dir = fresh("stale");
    const std::string stale = ".out.gguf.qltmp." + std::to_string(dead_pid()) + ".0123456789abcdef";
    const std::string live = ".out.gguf.qltmp." + std::to_string(::getpid()) + ".fedcba9876543210";
    const std::string other =
        ".other.gguf.qltmp." + std::to_string(dead_pid()) + ".0000000000000000";
    for (const auto& n : {stale, live, other}) put(dir / n, "junk");
    testing::internal::CaptureStderr();
    write_output_file((dir / "out.gguf").string(), "ok", Overwrite::refuse);
    const std::string err = testing::internal::GetCapturedStderr();
    EXPECT_FALSE(fs::exists(dir / stale));
    EXPECT_NE(err.find(stale), std::string::npos) << err;
    EXPECT_TRUE(fs::exists(dir / live)) << "a running process's temporary was removed";
    EXPECT_TRUE(fs::exists(dir / other)) << "another output's temporary was removed";
    EXPECT_EQ(slurp(dir / "out.gguf"), "ok");
}

TEST(OutputFile, SigtermRemovesTheLiveTemporaryAndStillKills) {
    const fs::path dir = fresh("sigterm");
    int ready[2];
    ASSERT_EQ(::pipe(ready), 0);
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::close(ready[0]);
        install_output_signal_cleanup();
        OutputFile f((dir / "big.bin").string(), Overwrite::refuse);
        f.write("started");
        (void)!::write(ready[1], "1", 1);
        for (;;) ::pause();
    }
    ::close(ready[1]);
    char c = 0;
    ASSERT_EQ(::read(ready[0], &c, 1), 1);
    ::close(ready[0]);
    EXPECT_EQ(temps(dir).size(), 1u);
    ::kill(pid, SIGTERM);
    int status = 0;
    ::waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) << status;
    EXPECT_TRUE(temps(dir).empty());
    EXPECT_FALSE(fs::exists(dir / "big.bin"));
}
