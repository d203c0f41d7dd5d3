#include "hub/cache.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "core/error.h"
#include "core/output_file.h"
#include "hub/repo.h"

namespace quantlens::hub {

namespace fs = std::filesystem;

RepoCache::RepoCache(const std::string& cache_dir, const std::string& repo_id)
    : root_(cache_dir + "/" + repo_folder_name(repo_id)) {}

std::string RepoCache::blob_path(const std::string& etag) const {
    return root_ + "/blobs/" + etag;
}

std::string RepoCache::incomplete_path(const std::string& etag) const {
    return blob_path(etag) + ".incomplete";
}

std::string RepoCache::snapshot_dir(const std::string& commit) const {
    return root_ + "/snapshots/" + commit;
}

void RepoCache::create_dirs() const {
    for (const char* sub : {"/blobs", "/refs", "/snapshots"}) {
        std::error_code ec;
        fs::create_directories(root_ + sub, ec);
        QL_CHECK(!ec, "cannot create the cache folder {}{}: {}", root_, sub, ec.message());
    }
}

void RepoCache::link_snapshot(const std::string& commit, const std::string& path,
                              const std::string& etag) const {
    const fs::path link = fs::path(snapshot_dir(commit)) / path;
    std::error_code ec;
    fs::create_directories(link.parent_path(), ec);
    QL_CHECK(!ec, "cannot create the cache folder {}: {}", link.parent_path().string(),
             ec.message());
    // Relative, so the cache folder can be moved: one "../" per folder between the link
    // and the repository folder (snapshots/, {commit}/, and the path's own folders).
    std::string target;
    const size_t depth = 2 + static_cast<size_t>(std::count(path.begin(), path.end(), '/'));
    for (size_t i = 0; i < depth; ++i) target += "../";
    target += "blobs/" + etag;
    if (fs::is_symlink(link, ec) && fs::read_symlink(link, ec).string() == target) return;
    // Replace atomically: a reader never sees the path missing.
    remove_stale_temps(link.string());
    const fs::path tmp = unique_temp_name(link.string());
    fs::create_symlink(target, tmp, ec);
    QL_CHECK(!ec, "cannot create the symlink {} -> {}: {}", tmp.string(), target, ec.message());
    fs::rename(tmp, link, ec);
    if (ec) {
        std::error_code ignored;
        fs::remove(tmp, ignored);
    }
    QL_CHECK(!ec, "cannot create the symlink {}: {}", link.string(), ec.message());
}

void RepoCache::write_ref(const std::string& revision, const std::string& commit) const {
    if (revision == commit) return;
    const fs::path ref = fs::path(root_) / "refs" / revision;
    std::error_code ec;
    fs::create_directories(ref.parent_path(), ec);
    // A ref moves with its branch, so replacing it is the point.
    write_output_file(ref.string(), commit, Overwrite::replace);  // bare hash, as huggingface_hub
}

std::optional<std::string> RepoCache::read_ref(const std::string& revision) const {
    std::ifstream in(fs::path(root_) / "refs" / revision);
    if (!in) return std::nullopt;
    std::string commit;
    in >> commit;
    if (commit.empty()) return std::nullopt;
    return commit;
}

}  // namespace quantlens::hub
