// `quantlens pull` against the mock Hub: a full download into the Hugging Face cache
// layout, resume after an interruption with only the missing bytes fetched, corruption
// caught and refetched, disk full reported with the partial file kept.
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "core/error.h"
#include "hub/fixture.h"
#include "support/error_of.h"

namespace quantlens::hub::testing {
namespace {

namespace fs = std::filesystem;

using PullTest = HubTest;

void expect_snapshot_matches_model(const std::string& snapshot, const MockHub& hub) {
    for (const auto& [name, lfs] : model_files()) {
        SCOPED_TRACE(name);
        const fs::path link = fs::path(snapshot) / name;
        ASSERT_TRUE(fs::is_symlink(link));
        const MockHub::File& f = hub.file(name);
        // Relative links into blobs/, named as huggingface_hub names them.
        EXPECT_EQ(fs::read_symlink(link).string(), "../../blobs/" + (lfs ? f.sha256 : f.blob_id));
        EXPECT_EQ(read_whole(link.string()), f.content);
    }
}

TEST_F(PullTest, DownloadsModelFilesIntoTheHuggingFaceCacheLayout) {
    const PullResult r = pull(options());
    EXPECT_EQ(r.commit, MockHub::kCommit);
    EXPECT_EQ(r.snapshot_dir, snapshot());
    EXPECT_EQ(r.files.size(), 6u);  // golden.json is not part of a model
    EXPECT_EQ(r.bytes_total, kModelBytes);
    EXPECT_EQ(r.bytes_fetched, kModelBytes);
    EXPECT_EQ(hub_->bytes_served.load(), kModelBytes);
    EXPECT_FALSE(fs::exists(snapshot() + "/golden.json"));
    expect_snapshot_matches_model(snapshot(), *hub_);
    EXPECT_EQ(read_whole(repo_dir() + "/refs/main"), MockHub::kCommit);
    for (const auto& e : fs::directory_iterator(repo_dir() + "/blobs"))
        EXPECT_EQ(e.path().extension(), "") << "left over: " << e.path();

    // Everything is in the store: a second pull asks only for the listing.
    hub_->reset_counters();
    const PullResult again = pull(options());
    EXPECT_EQ(again.bytes_fetched, 0);
    EXPECT_EQ(again.files_already_present, 6);
    EXPECT_EQ(hub_->file_requests.load(), 0);
    EXPECT_EQ(hub_->api_requests.load(), 1);
}

TEST_F(PullTest, InterruptedDownloadResumesWithOnlyTheRemainingBytes) {
    const std::string big = "model-00001-of-00002.safetensors";
    constexpr int64_t kCut = 5'000'000;
    MockHub::Faults faults;
    faults.abort_path = big;
    faults.abort_after = kCut;
    hub_->set_faults(faults);
    PullOptions o = options();
    o.retry.max_retries = 0;  // the first run dies like a killed process would
    try {
        pull(o);
        FAIL() << "the cut connection did not fail the pull";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("network error"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find(big), std::string::npos) << e.what();
    }
    const std::string partial = repo_dir() + "/blobs/" + hub_->file(big).sha256 + ".incomplete";
    ASSERT_TRUE(fs::exists(partial));
    EXPECT_EQ(static_cast<int64_t>(fs::file_size(partial)), kCut);
    EXPECT_FALSE(fs::exists(snapshot() + "/" + big));

    const int64_t on_disk = bytes_in_blobs();
    hub_->set_faults({});
    hub_->reset_counters();
    const PullResult r = pull(options());
    EXPECT_EQ(hub_->bytes_served.load(), kModelBytes - on_disk);
    EXPECT_EQ(r.bytes_fetched, kModelBytes - on_disk);
    EXPECT_LE(hub_->bytes_served.load(), kModelBytes - kCut);
    const auto ranges = hub_->range_headers();
    EXPECT_NE(std::find(ranges.begin(), ranges.end(), "bytes=5000000-"), ranges.end());
    expect_snapshot_matches_model(snapshot(), *hub_);
}

TEST_F(PullTest, DroppedConnectionIsResumedWithinOneRun) {
    MockHub::Faults faults;
    faults.abort_path = "model-00002-of-00002.safetensors";
    faults.abort_after = 1'000'000;
    hub_->set_faults(faults);
    const PullResult r = pull(options());
    // The retry asks only for the rest: not one byte is sent twice.
    EXPECT_EQ(hub_->bytes_served.load(), kModelBytes);
    EXPECT_EQ(r.bytes_fetched, kModelBytes);
    const auto ranges = hub_->range_headers();
    EXPECT_NE(std::find(ranges.begin(), ranges.end(), "bytes=1000000-"), ranges.end());
    expect_snapshot_matches_model(snapshot(), *hub_);
}

TEST_F(PullTest, CorruptedByteIsDetectedAndRefetched) {
    const std::string shard = "model-00002-of-00002.safetensors";
    MockHub::Faults faults;
    faults.corrupt_path = shard;
    faults.corrupt_times = 1;
    hub_->set_faults(faults);
    ::testing::internal::CaptureStderr();
    const PullResult r = pull(options());
    const std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_NE(err.find("checksum mismatch"), std::string::npos) << err;
    EXPECT_NE(err.find(shard), std::string::npos) << err;
    const int64_t shard_size = static_cast<int64_t>(hub_->file(shard).content.size());
    EXPECT_EQ(shard_size, 2097272);
    EXPECT_EQ(hub_->bytes_served.load(), kModelBytes + shard_size);
    EXPECT_EQ(r.bytes_fetched, kModelBytes + shard_size);
    expect_snapshot_matches_model(snapshot(), *hub_);
}

TEST_F(PullTest, CorruptionOfASmallGitFileIsCaughtByItsBlobId) {
    MockHub::Faults faults;
    faults.corrupt_path = "tokenizer.json";
    faults.corrupt_times = 2;  // the refetch is corrupted too
    hub_->set_faults(faults);
    ::testing::internal::CaptureStderr();
    const std::string msg =
        test_support::error_of([&] { pull(options()); }, "a corrupted tokenizer.json was accepted");
    EXPECT_NE(msg.find("tokenizer.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find("checksum mismatch after a refetch"), std::string::npos) << msg;
    EXPECT_NE(msg.find(hub_->file("tokenizer.json").blob_id), std::string::npos) << msg;
    ::testing::internal::GetCapturedStderr();
    const std::string blob = repo_dir() + "/blobs/" + hub_->file("tokenizer.json").blob_id;
    EXPECT_FALSE(fs::exists(blob));
    EXPECT_FALSE(fs::exists(blob + ".incomplete"));
    EXPECT_FALSE(fs::exists(snapshot() + "/tokenizer.json"));
}

TEST_F(PullTest, DiskFullKeepsThePartialFileAndSaysHowToResume) {
    // /dev/full answers every write with ENOSPC: put it where config.json's partial goes.
    const std::string blob_id = hub_->file("config.json").blob_id;
    fs::create_directories(repo_dir() + "/blobs");
    fs::create_symlink("/dev/full", repo_dir() + "/blobs/" + blob_id + ".incomplete");
    const std::string msg =
        test_support::error_of([&] { pull(options()); }, "a full disk went unnoticed");
    EXPECT_NE(msg.find("disk full while writing config.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find("partial file is kept"), std::string::npos) << msg;
    EXPECT_TRUE(fs::is_symlink(repo_dir() + "/blobs/" + blob_id + ".incomplete"));
}

TEST_F(PullTest, TwoConcurrentPullsShareTheWorkThroughFileLocks) {
    PullResult a, b;
    std::string other_error;
    std::thread other([&] {
        try {
            a = pull(options());
        } catch (const std::exception& e) {
            other_error = e.what();
        }
    });
    b = pull(options());
    other.join();
    ASSERT_EQ(other_error, "");
    // Each file was fetched by whichever pull locked it first; the other waited and reused it.
    EXPECT_EQ(hub_->bytes_served.load(), kModelBytes);
    EXPECT_EQ(a.bytes_fetched + b.bytes_fetched, kModelBytes);
    expect_snapshot_matches_model(snapshot(), *hub_);
}

TEST_F(PullTest, ListingWithoutBlobsIsCompletedFromThePaginatedTree) {
    // A second mock, set up as a mirror that ignores ?blobs=true.
    MockHub mirror("test-org/llama-8m");
    const std::string model = shared_dir() + "/models/llama-8m";
    for (const auto& [name, lfs] : model_files())
        mirror.add_file(name, read_whole(model + "/" + name), lfs);
    mirror.ignore_blobs_param = true;
    mirror.tree_page_size = 4;
    mirror.start();
    PullOptions o = options();
    o.endpoint = mirror.endpoint();
    const PullResult r = pull(o);
    EXPECT_EQ(r.bytes_total, kModelBytes);
    EXPECT_EQ(r.bytes_fetched, kModelBytes);
    EXPECT_EQ(mirror.api_requests.load(), 3);  // the listing and two tree pages
    expect_snapshot_matches_model(r.snapshot_dir, mirror);
}

TEST_F(PullTest, IncludeGlobsChooseFiles) {
    PullOptions o = options();
    o.include = {"*.json"};
    const PullResult r = pull(o);
    EXPECT_EQ(r.files.size(), 5u);  // four model json files and golden.json
    EXPECT_EQ(read_whole(snapshot() + "/golden.json"), hub_->file("golden.json").content);
    EXPECT_FALSE(fs::exists(snapshot() + "/model-00001-of-00002.safetensors"));

    o.include = {"*Q4_K_M.gguf"};
    try {
        pull(o);
        FAIL() << "an include that matches nothing was accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("no file matches --include *Q4_K_M.gguf"),
                  std::string::npos)
            << e.what();
    }
}

}  // namespace
}  // namespace quantlens::hub::testing
