// The documented failure messages of `quantlens pull` (README.md, "Downloading models"):
// gated repos (401/403), missing repos and revisions (404), rate limits (429, retried with
// back-off that honours Retry-After) — and the token: sent only as a Bearer header, never
// printed, never in an error message.
#include <chrono>
#include <fstream>

#include "core/error.h"
#include "hub/fixture.h"

namespace quantlens::hub::testing {
namespace {

using ErrorsTest = HubTest;

constexpr const char* kToken = "hf_MockSecretToken0123456789abcdef";

MockHub::Faults gated(const std::string& token) {
    MockHub::Faults f;
    f.required_token = token;
    return f;
}

// `status` for the next `count` requests (-1: all), with a Retry-After header.
MockHub::Faults answer(int status, int count, const std::string& retry_after,
                       bool files_only = false) {
    MockHub::Faults f;
    f.status = status;
    f.status_count = count;
    f.retry_after = retry_after;
    f.files_only = files_only;
    return f;
}

// The Error message of a pull that must fail.
std::string pull_error(const PullOptions& o) {
    try {
        pull(o);
    } catch (const Error& e) {
        return e.what();
    }
    ADD_FAILURE() << "the pull succeeded";
    return "";
}

#define EXPECT_HAS(text, part) EXPECT_NE((text).find(part), std::string::npos) << (text)

TEST_F(ErrorsTest, GatedRepoWithoutTokenSays401AcceptLicenseAndPassToken) {
    hub_->set_faults(gated(kToken));
    const std::string msg = pull_error(options());
    EXPECT_HAS(msg, "test-org/llama-8m: authentication required (HTTP 401");
    EXPECT_HAS(msg, "gated");
    EXPECT_HAS(msg, "accept its license on " + hub_->endpoint() + "/test-org/llama-8m");
    EXPECT_HAS(msg, "--token, HF_TOKEN or `huggingface-cli login`");
    EXPECT_EQ(hub_->api_requests.load(), 1);
    EXPECT_LE(hub_->file_requests.load(), options().jobs);  // 401 is not retried
}

TEST_F(ErrorsTest, GatedRepoWithAnotherAccountsTokenSays403) {
    hub_->set_faults(gated(kToken));
    PullOptions o = options();
    o.token = "hf_SomeoneElsesToken42";
    const std::string msg = pull_error(o);
    EXPECT_HAS(msg, "test-org/llama-8m: access denied (HTTP 403");
    EXPECT_HAS(msg, "accept the license on " + hub_->endpoint() + "/test-org/llama-8m");
    EXPECT_EQ(msg.find("hf_SomeoneElsesToken42"), std::string::npos) << msg;
}

TEST_F(ErrorsTest, MissingRepoAndRevisionSay404) {
    PullOptions o = options();
    o.repo_id = "test-org/no-such-model";
    std::string msg = pull_error(o);
    EXPECT_HAS(msg, "test-org/no-such-model: repository or revision 'main' not found on " +
                        hub_->endpoint() + " (HTTP 404: Repository not found)");
    EXPECT_HAS(msg, "check the spelling of ORG/NAME");

    o = options();
    o.revision = "v9";
    msg = pull_error(o);
    EXPECT_HAS(msg, "test-org/llama-8m: revision 'v9' not found (HTTP 404");

    o = options();
    o.repo_id = "not a repo";
    msg = pull_error(o);
    EXPECT_HAS(msg, "'not a repo' is not a Hugging Face repo id: expected ORG/NAME");
}

TEST_F(ErrorsTest, RateLimitIsRetriedHonouringRetryAfter) {
    // Two 429s that ask for one second; the back-off alone would wait 30 s and more.
    hub_->set_faults(answer(429, 2, "1"));
    PullOptions o = options();
    o.retry.base_seconds = 30;
    o.retry.max_wait_seconds = 60;
    const auto start = std::chrono::steady_clock::now();
    const PullResult r = pull(o);
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_EQ(r.bytes_fetched, kModelBytes);
    EXPECT_EQ(hub_->api_requests.load(), 3);
    EXPECT_GE(s, 1.9);
    EXPECT_LT(s, 10.0);
}

TEST_F(ErrorsTest, PersistentRateLimitSays429AfterRetries) {
    hub_->set_faults(answer(429, -1, "0"));
    PullOptions o = options();
    o.retry.max_retries = 2;
    const std::string msg = pull_error(o);
    EXPECT_HAS(msg, "test-org/llama-8m: rate limited by the Hub (HTTP 429");
    EXPECT_HAS(msg, "after 2 retries with back-off");
    EXPECT_HAS(msg, "run the same command again");
    EXPECT_EQ(hub_->api_requests.load(), 3);
}

TEST_F(ErrorsTest, RateLimitOnAFileIsRetriedToo) {
    hub_->set_faults(answer(429, 1, "0", true));
    PullOptions o = options();
    o.include = {"config.json"};
    const PullResult r = pull(o);
    EXPECT_EQ(r.bytes_fetched, 721);
    EXPECT_EQ(hub_->file_requests.load(), 2);
}

TEST_F(ErrorsTest, TokenReachesTheServerOnlyAsBearerAndIsNeverPrinted) {
    hub_->set_faults(gated(kToken));
    Progress::set_enabled(true);  // the progress bar is output too
    PullOptions o = options();
    o.token = kToken;
    ::testing::internal::CaptureStdout();
    ::testing::internal::CaptureStderr();
    const PullResult r = pull(o);
    const std::string out = ::testing::internal::GetCapturedStdout();
    const std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_EQ(r.bytes_fetched, kModelBytes);
    const auto seen = hub_->authorization_headers();
    ASSERT_FALSE(seen.empty());
    for (const auto& h : seen) EXPECT_EQ(h, std::string("Bearer ") + kToken);
    EXPECT_EQ(out.find(kToken), std::string::npos);
    EXPECT_EQ(err.find(kToken), std::string::npos);
    EXPECT_NE(err.find("pull test-org/llama-8m"), std::string::npos) << "no progress shown";

    // A failure with the token set: the message does not carry it either.
    hub_->set_faults(answer(500, -1, "0"));
    const std::string msg = pull_error(o);
    EXPECT_HAS(msg, "HTTP 500");
    EXPECT_EQ(msg.find(kToken), std::string::npos) << msg;
}

TEST_F(ErrorsTest, TokenComesFromHfTokenThenTheLoginFile) {
    hub_->set_faults(gated(kToken));
    ::setenv("HF_TOKEN", kToken, 1);
    EXPECT_EQ(pull(options()).files.size(), 6u);
    ::unsetenv("HF_TOKEN");

    // `huggingface-cli login` stores the token in $HF_HOME/token.
    std::filesystem::remove_all(cache_dir());
    std::filesystem::create_directories(tmp_ + "/hf-home");
    std::ofstream(tmp_ + "/hf-home/token") << kToken << "\n";
    hub_->reset_counters();
    EXPECT_EQ(pull(options()).files.size(), 6u);
    for (const auto& h : hub_->authorization_headers())
        EXPECT_EQ(h, std::string("Bearer ") + kToken);
}

}  // namespace
}  // namespace quantlens::hub::testing
