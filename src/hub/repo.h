// A Hub model repository as the API describes it, and which of its files a model needs.
//
// Listing: GET {endpoint}/api/models/{ORG/NAME}/revision/{rev}?blobs=true answers
//   {"id": "ORG/NAME", "sha": "<commit>", "siblings": [
//      {"rfilename": "config.json", "size": 721, "blobId": "<git blob sha1>"},
//      {"rfilename": "model.safetensors", "size": N, "blobId": "<sha1 of the LFS pointer>",
//       "lfs": {"sha256": "<sha256 of the content>", "size": N, "pointerSize": 134}}, ...]}
// An endpoint that ignores ?blobs=true (some mirrors) gets the sizes and ids from the tree
// listing GET {endpoint}/api/models/{ORG/NAME}/tree/{commit}?recursive=true, paginated by
// `Link: <next>; rel="next"`: [{"type": "file", "path", "size", "oid", "lfs": {"oid", "size"}}].
// Files: GET {endpoint}/{ORG/NAME}/resolve/{commit}/{path}, usually a redirect to a CDN.
// The cache names a file's blob by its ETag, which is the LFS sha256 for LFS files and the
// git blob id otherwise — the same ids the listing gives, so no HEAD request is needed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "hub/http.h"

namespace quantlens::hub {

struct RepoFile {
    std::string path;     // relative path in the repo ("model-00001-of-00002.safetensors")
    int64_t size = -1;    // bytes; -1 when the listing did not say
    std::string blob_id;  // git blob id (40 hex)
    std::string sha256;   // LFS oid (64 hex); empty for files stored in git itself

    bool is_lfs() const { return !sha256.empty(); }
    std::string etag() const { return is_lfs() ? sha256 : blob_id; }
};

struct RepoInfo {
    std::string repo_id;
    std::string commit;  // 40-hex commit the revision points to
    std::vector<RepoFile> files;
};

// Throws Error unless repo_id is ORG/NAME (or a bare legacy NAME) of Hub-legal characters.
void check_repo_id(const std::string& repo_id);
// "models--ORG--NAME", the repository's folder in the cache.
std::string repo_folder_name(const std::string& repo_id);
std::string url_escape(const std::string& s, bool keep_slashes);
std::string file_url(const std::string& endpoint, const std::string& repo_id,
                     const std::string& commit, const std::string& path);

// Fetches the listing (with retries per `policy`); throws Error with the documented
// 401/403/404/429 messages.
RepoInfo fetch_repo_info(HttpClient& http, const std::string& endpoint, const std::string& repo_id,
                         const std::string& revision, bool have_token, const RetryPolicy& policy);

// The files a model needs: with no globs, config/tokenizer files, root *.safetensors and
// their index; with globs, every file whose path (or basename) matches one of them
// (fnmatch: '*Q4_K_M.gguf'). Throws Error, listing what the repo has, when nothing matches.
std::vector<RepoFile> select_files(const RepoInfo& info, const std::vector<std::string>& globs);

// The message for an HTTP failure `r` while working on `what` (a file path or the repo);
// documented in README.md ("Downloading models").
[[noreturn]] void throw_http_error(const HttpResponse& r, const std::string& endpoint,
                                   const std::string& repo_id, const std::string& revision,
                                   const std::string& what, bool have_token, int retries);

}  // namespace quantlens::hub
