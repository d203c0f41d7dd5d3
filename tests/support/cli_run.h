// Test helper (header-only) for tests/cli: runs the built `quantlens` binary and gives each
// test a fresh scratch directory, so every CLI test checks exit codes and output the same way.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace quantlens::cli_testing {

struct Result {
    int code = -1;    // exit status; -1 when the process did not exit normally
    std::string out;  // stdout, and stderr unless the caller asked for stdout alone
};

// `quantlens ARGS` through the shell (ARGS may quote, and ENV may set variables).
// with_stderr false: stdout only, for JSON output.
inline Result run_cli(const std::string& args, const std::string& env = "",
                      bool with_stderr = true) {
    const std::string cmd =
        env + " " QL_BINARY_DIR "/quantlens " + args + (with_stderr ? " 2>&1" : " 2>/dev/null");
    Result r;
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return r;
    std::array<char, 4096> buf;
    size_t n;
    while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
    const int status = pclose(p);
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
}

// An empty directory QL_TEST_TMP/PREFIX-<test name>-<pid> (tests of one executable may run
// in parallel processes, and a rerun starts clean).
inline std::string fresh_dir(const std::string& prefix) {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    const auto dir =
        std::filesystem::path(QL_TEST_TMP) /
        (prefix + "-" + std::string(info ? info->name() : "none") + "-" + std::to_string(getpid()));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    return dir.string();
}

inline std::string shared_dir() {
    const char* env = std::getenv("QUANTLENS_SHARED");
    return env ? env : QL_SHARED_DIR;
}

// A file of the shared test data: shared_path("models/llama-8m").
inline std::string shared_path(const std::string& rel) {
    return shared_dir() + "/" + rel;
}

// `quantlens -q ARGS`: no progress lines in output a test parses.
inline Result run_quiet(const std::string& args, bool with_stderr = true) {
    return run_cli("-q " + args, "", with_stderr);
}

}  // namespace quantlens::cli_testing
