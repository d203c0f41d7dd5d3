// One file from the Hub into its cache blob: resume from blobs/{etag}.incomplete with a
// Range request, stream through a digest while writing, verify size and checksum, refetch
// once on a mismatch, retry dropped connections and 429/5xx per the retry policy, then
// rename to blobs/{etag}. Internal to pull.cpp (and its tests).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "hub/http.h"
#include "hub/repo.h"

namespace quantlens::hub {

struct DownloadTarget {
    RepoFile file;
    std::string url;
    std::string blob_path;
    std::string incomplete_path;
};

struct DownloadContext {
    std::string endpoint, repo_id, revision;
    bool have_token = false;
    RetryPolicy retry;
    std::atomic<int64_t>* bytes_on_disk = nullptr;  // progress: grows as bytes are written
};

// Returns the bytes received over the network. Throws Error (disk full, checksum mismatch
// after a refetch, HTTP failures) and leaves the partial file for the next run where that
// helps.
int64_t download_blob(HttpClient& http, const DownloadTarget& target, const DownloadContext& ctx);

}  // namespace quantlens::hub
