// resolve_model_path: MODEL arguments given as paths or as ORG/NAME of pulled repositories.
#include <filesystem>

#include "core/error.h"
#include "hub/fixture.h"
#include "hub/resolve.h"

namespace quantlens::hub::testing {
namespace {

namespace fs = std::filesystem;

using ResolveTest = HubTest;

std::string resolve_error(const std::string& arg, const std::string& cache) {
    try {
        resolve_model_path(arg, cache);
    } catch (const Error& e) {
        return e.what();
    }
    ADD_FAILURE() << arg << " resolved";
    return "";
}

TEST_F(ResolveTest, ExistingPathsAreReturnedAsGiven) {
    const std::string model = shared_dir() + "/models/llama-8m";
    EXPECT_EQ(resolve_model_path(model, cache_dir()), model);
    EXPECT_EQ(resolve_model_path(model + "/config.json", cache_dir()), model + "/config.json");
}

TEST_F(ResolveTest, PulledRepoResolvesToItsSnapshot) {
    pull(options());
    EXPECT_EQ(resolve_model_path("test-org/llama-8m", cache_dir()), snapshot());
    EXPECT_EQ(resolve_model_path(std::string("test-org/llama-8m@") + MockHub::kCommit, cache_dir()),
              snapshot());
    // The one-argument form other commands call finds the store through HF_HUB_CACHE.
    ::setenv("HF_HUB_CACHE", cache_dir().c_str(), 1);
    EXPECT_EQ(quantlens::resolve_model_path("test-org/llama-8m"), snapshot());
    ::unsetenv("HF_HUB_CACHE");
    EXPECT_EQ(read_whole(snapshot() + "/config.json"),
              read_whole(shared_dir() + "/models/llama-8m/config.json"));
}

TEST_F(ResolveTest, UnknownModelsSuggestPull) {
    std::string msg = resolve_error("test-org/llama-8m", cache_dir());
    EXPECT_NE(msg.find("run `quantlens pull test-org/llama-8m` first"), std::string::npos) << msg;

    pull(options());
    msg = resolve_error("test-org/llama-8m@v2", cache_dir());
    EXPECT_NE(msg.find("revision 'v2' is not in the local store"), std::string::npos) << msg;
    EXPECT_NE(msg.find("quantlens pull test-org/llama-8m --revision v2"), std::string::npos) << msg;

    msg = resolve_error(tmp_ + "/missing.gguf", cache_dir());
    EXPECT_NE(msg.find("no such file or folder"), std::string::npos) << msg;
}

TEST_F(ResolveTest, GgufRepoPulledWithIncludeResolvesToTheFile) {
    MockHub gguf("test-org/tiny-GGUF");
    gguf.add_file("tiny-Q4_K_M.gguf", std::string(3000, 'q'), true);
    gguf.add_file("tiny-Q8_0.gguf", std::string(5000, '8'), true);
    gguf.add_file("README.md", "# tiny\n", false);
    gguf.start();
    PullOptions o = options();
    o.repo_id = "test-org/tiny-GGUF";
    o.endpoint = gguf.endpoint();

    // Without --include there are no safetensors to take: say how to pick a GGUF.
    try {
        pull(o);
        FAIL() << "a GGUF-only repo pulled without --include";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("--include '*Q4_K_M.gguf'"), std::string::npos)
            << e.what();
    }

    o.include = {"*Q4_K_M.gguf"};
    const PullResult r = pull(o);
    ASSERT_EQ(r.files, std::vector<std::string>{"tiny-Q4_K_M.gguf"});
    EXPECT_EQ(r.bytes_fetched, 3000);
    const std::string path = resolve_model_path("test-org/tiny-GGUF", cache_dir());
    EXPECT_EQ(path, r.snapshot_dir + "/tiny-Q4_K_M.gguf");
    EXPECT_EQ(read_whole(path), std::string(3000, 'q'));

    // Two GGUF files: the user must say which.
    o.include = {"*.gguf"};
    pull(o);
    const std::string msg = resolve_error("test-org/tiny-GGUF", cache_dir());
    EXPECT_NE(msg.find("holds 2 GGUF files"), std::string::npos) << msg;
}

}  // namespace
}  // namespace quantlens::hub::testing
