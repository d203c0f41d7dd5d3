// `quantlens pull`: fetch a model repository from the Hugging Face Hub into the local store
// (cache.h), in parallel, resumable after any interruption, every file verified.
//
// Promises: a file appears in the store only after its size and checksum (LFS sha256, or
// git blob SHA-1 for small files) matched the Hub's listing; an interrupted run leaves
// blobs/{etag}.incomplete, which the next run continues with an HTTP Range request; a
// checksum mismatch discards the file and fetches it once more before failing; 429 and
// 5xx answers and dropped connections are retried with exponential back-off (Retry-After
// honoured); the token is sent only as `Authorization: Bearer` and never appears in a
// message. Errors are quantlens::Error with the messages README.md documents.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "hub/http.h"

namespace quantlens::hub {

struct PullOptions {
    std::string repo_id;               // ORG/NAME
    std::string revision = "main";     // branch, tag or commit
    std::vector<std::string> include;  // globs; empty = what a safetensors model needs
    std::string token;                 // empty: HF_TOKEN, then the token file (env.h)
    std::string endpoint;              // empty: HF_ENDPOINT, then https://huggingface.co
    std::string cache_dir;             // empty: HF_HUB_CACHE, HF_HOME/hub, ~/.cache/...
    int jobs = 4;                      // files downloaded at once
    RetryPolicy retry;
    bool progress = true;  // bar on stderr (also off with Progress::set_enabled)
};

struct PullResult {
    std::string snapshot_dir;  // {cache}/models--ORG--NAME/snapshots/{commit}
    std::string commit;
    std::vector<std::string> files;  // repo paths now in the snapshot
    int64_t bytes_total = 0;         // sizes of those files
    int64_t bytes_fetched = 0;       // bytes that came over the network in this run
    int files_already_present = 0;
};

PullResult pull(const PullOptions& options);

}  // namespace quantlens::hub
