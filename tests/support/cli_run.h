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

#include <nlohmann/json.hpp>

#include "support/test_data.h"

namespace quantlens::cli_testing {

using test_support::contains;
using test_support::fresh_dir;
using test_support::shared_dir;
using test_support::shared_path;
using test_support::suite_file;

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

// `quantlens -q ARGS`: no progress lines in output a test parses.
inline Result run_quiet(const std::string& args, bool with_stderr = true) {
    return run_cli("-q " + args, "", with_stderr);
}

// `quantlens eval MODEL --json` over the first two 512-token chunks of the shared eval.txt
// against the base log-probs BASE (a fixture's reference.qllogp); a failed run fails the test.
inline nlohmann::json eval_against(const std::string& model, const std::string& base,
                                   const std::string& extra = "") {
    const auto r = run_quiet("eval " + model + " --text " + shared_path("data/eval.txt") +
                                 " --ctx 512 --chunks 2 --base " + base + " --json " + extra,
                             false);
    EXPECT_EQ(r.code, 0) << r.out;
    return nlohmann::json::parse(r.out);
}

// What a family fixture's CLI eval is held to against transformers' float64 log-probs
// (issues 23 and 24): mean KLD at most this, the same top-1 token at 99 % of positions.
inline constexpr double kFixtureEvalMaxMeanKld = 1e-4;

// eval_against of tests/fixtures/NAME and its reference.qllogp, with those two checks; the
// JSON, for the caller's own (transformers' PPL).
inline nlohmann::json expect_fixture_eval_matches(const std::string& name) {
    const std::string dir = std::string(QL_SOURCE_DIR) + "/tests/fixtures/" + name;
    const auto j = eval_against(dir, dir + "/reference.qllogp");
    EXPECT_LE(j["kld"]["mean"].get<double>(), kFixtureEvalMaxMeanKld) << name << j.dump(2);
    EXPECT_GE(j["same_top1_pct"].get<double>(), 99.0) << name << j.dump(2);
    return j;
}

}  // namespace quantlens::cli_testing
