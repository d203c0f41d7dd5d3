// `quantlens pull` as a user runs it: the built binary against the mock Hub, checking the
// exit code, what it prints, and that the token appears in neither stdout nor stderr.
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>

#include "hub/fixture.h"

namespace quantlens::hub::testing {
namespace {

using CliTest = HubTest;

constexpr const char* kToken = "hf_CliSecretToken9876543210zyxwv";

struct CliRun {
    int exit_code = -1;
    std::string out, err;
};

// Runs the CLI with `args` (already shell-quoted) and the environment prefix `env`.
CliRun run_cli(const std::string& tmp, const std::string& env, const std::string& args) {
    const std::string out = tmp + "/stdout.txt", err = tmp + "/stderr.txt";
    const std::string cmd =
        env + " " + QL_BINARY_DIR "/quantlens " + args + " >" + out + " 2>" + err;
    CliRun r;
    const int status = std::system(cmd.c_str());
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = read_whole(out);
    r.err = read_whole(err);
    return r;
}

TEST_F(CliTest, PullPrintsTheSnapshotAndNeverTheToken) {
    MockHub::Faults gated;
    gated.required_token = kToken;
    hub_->set_faults(gated);
    const std::string common =
        "pull test-org/llama-8m --endpoint " + hub_->endpoint() + " --cache-dir " + cache_dir();

    // No token: the documented 401 message, exit code 1.
    CliRun r = run_cli(tmp_, "", common);
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_NE(r.err.find("error: test-org/llama-8m: authentication required (HTTP 401"),
              std::string::npos)
        << r.err;

    // The token from HF_TOKEN.
    r = run_cli(tmp_, std::string("HF_TOKEN=") + kToken, common + " --jobs 2");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("test-org/llama-8m @ 4f1d2c3b4a59: 6 files, 17.1 MB (17.1 MB "
                         "downloaded now, 0 already present)"),
              std::string::npos)
        << r.out;
    EXPECT_NE(r.out.find(snapshot()), std::string::npos) << r.out;
    EXPECT_NE(r.err.find("pull test-org/llama-8m ["), std::string::npos) << "no progress bar";
    EXPECT_EQ(r.out.find(kToken), std::string::npos);
    EXPECT_EQ(r.err.find(kToken), std::string::npos);

    // The token from --token, and a second run finds everything in place.
    r = run_cli(tmp_, "", common + " --token " + kToken);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("(0.0 MB downloaded now, 6 already present)"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find(kToken), std::string::npos);
    EXPECT_EQ(r.err.find(kToken), std::string::npos);
    for (const auto& h : hub_->authorization_headers()) {
        if (!h.empty()) {
            EXPECT_EQ(h, std::string("Bearer ") + kToken);
        }
    }
}

}  // namespace
}  // namespace quantlens::hub::testing
