// The local store, laid out like the Hugging Face cache so that transformers, llama.cpp and
// huggingface_hub find what quantlens pulled (and the other way round):
//   {cache}/models--ORG--NAME/
//     blobs/{etag}                 file content, named by LFS sha256 or git blob id
//     blobs/{etag}.incomplete      a download in progress (resumed with a Range request)
//     refs/{revision}              the commit hash a branch or tag pointed to
//     snapshots/{commit}/{path}    relative symlink → ../../blobs/{etag}
// A blob appears under its final name only after its size and checksum were verified.
#pragma once

#include <optional>
#include <string>

namespace quantlens::hub {

class RepoCache {
  public:
    RepoCache(const std::string& cache_dir, const std::string& repo_id);

    const std::string& root() const { return root_; }
    std::string blob_path(const std::string& etag) const;
    std::string incomplete_path(const std::string& etag) const;
    std::string snapshot_dir(const std::string& commit) const;

    // Creates the blobs/, refs/ and snapshots/ folders; throws Error naming the path.
    void create_dirs() const;
    // snapshots/{commit}/{path} → blob, replacing a stale link.
    void link_snapshot(const std::string& commit, const std::string& path,
                       const std::string& etag) const;
    // refs/{revision} = commit (skipped when the revision is the commit itself).
    void write_ref(const std::string& revision, const std::string& commit) const;
    std::optional<std::string> read_ref(const std::string& revision) const;

  private:
    std::string root_;
};

}  // namespace quantlens::hub
