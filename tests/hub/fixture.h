// Shared setup of the hub tests: a mock Hub serving ../shared/models/llama-8m as the repo
// test-org/llama-8m, a fresh cache folder per test, and an environment that cannot reach
// the real Hub or a real token (HF_* variables cleared, loopback exempt from proxies).
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "core/progress.h"
#include "hub/mock_hub.h"
#include "hub/pull.h"
#include "support/test_data.h"

namespace quantlens::hub::testing {

using test_support::shared_dir;

// Files of llama-8m that a default pull selects, and their sizes on disk.
inline const std::vector<std::pair<std::string, bool>>& model_files() {
    static const std::vector<std::pair<std::string, bool>> files = {
        {"config.json", false},
        {"tokenizer.json", false},
        {"tokenizer_config.json", false},
        {"model.safetensors.index.json", false},
        {"model-00001-of-00002.safetensors", true},
        {"model-00002-of-00002.safetensors", true}};
    return files;
}
constexpr int64_t kModelBytes = 17062844;  // sum of the six files' sizes

class HubTest : public ::testing::Test {
  protected:
    void SetUp() override {
        const std::string model = shared_dir() + "/models/llama-8m";
        hub_ = std::make_unique<MockHub>("test-org/llama-8m");
        for (const auto& [name, lfs] : model_files())
            hub_->add_file(name, read_whole(model + "/" + name), lfs);
        // In the repo but not needed to run the model: a default pull must skip it.
        hub_->add_file("golden.json", read_whole(model + "/golden.json"), false);
        hub_->start();

        const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
        tmp_ = std::string(QL_TEST_TMP) + "/hub/" + info->test_suite_name() + "." + info->name();
        std::filesystem::remove_all(tmp_);
        std::filesystem::create_directories(tmp_);
        ::setenv("HF_HOME", (tmp_ + "/hf-home").c_str(), 1);
        for (const char* v : {"HF_TOKEN", "HF_TOKEN_PATH", "HF_HUB_CACHE", "HF_ENDPOINT"})
            ::unsetenv(v);
        ::setenv("no_proxy", "127.0.0.1,localhost", 1);
        ::setenv("NO_PROXY", "127.0.0.1,localhost", 1);
        Progress::set_enabled(false);
    }
    void TearDown() override { Progress::set_enabled(true); }

    PullOptions options() const {
        PullOptions o;
        o.repo_id = "test-org/llama-8m";
        o.endpoint = hub_->endpoint();
        o.cache_dir = cache_dir();
        o.jobs = 4;
        o.retry.max_retries = 3;
        o.retry.base_seconds = 0.01;  // fast back-off in tests
        o.retry.max_wait_seconds = 0.05;
        return o;
    }
    std::string cache_dir() const { return tmp_ + "/cache"; }
    std::string repo_dir() const { return cache_dir() + "/models--test-org--llama-8m"; }
    std::string snapshot() const { return repo_dir() + "/snapshots/" + MockHub::kCommit; }

    // Bytes of the repo's files present in blobs/ (complete or partial).
    int64_t bytes_in_blobs() const {
        int64_t n = 0;
        for (const auto& e : std::filesystem::directory_iterator(repo_dir() + "/blobs"))
            n += static_cast<int64_t>(e.file_size());
        return n;
    }

    std::unique_ptr<MockHub> hub_;
    std::string tmp_;
};

}  // namespace quantlens::hub::testing
