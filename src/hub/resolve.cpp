#include "hub/resolve.h"

#include <algorithm>
#include <filesystem>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"
#include "hub/cache.h"
#include "hub/env.h"
#include "hub/repo.h"

namespace quantlens::hub {
namespace {

namespace fs = std::filesystem;

bool looks_like_repo_id(const std::string& s) {
    if (std::count(s.begin(), s.end(), '/') != 1) return false;
    try {
        check_repo_id(s);
        return true;
    } catch (const Error&) {
        return false;
    }
}

// The newest snapshot when no ref names one (e.g. pulled by commit hash).
std::string newest_snapshot(const std::string& snapshots) {
    std::error_code ec;
    std::string best;
    fs::file_time_type best_time{};
    for (const auto& e : fs::directory_iterator(snapshots, ec)) {
        if (!e.is_directory()) continue;
        const auto t = e.last_write_time(ec);
        if (best.empty() || t > best_time) {
            best = e.path().filename().string();
            best_time = t;
        }
    }
    return best;
}

}  // namespace

std::string resolve_model_path(const std::string& arg, const std::string& cache_dir_arg) {
    std::error_code ec;
    if (fs::exists(arg, ec)) return arg;

    std::string repo_id = arg, revision;
    if (const size_t at = arg.find('@'); at != std::string::npos) {
        repo_id = arg.substr(0, at);
        revision = arg.substr(at + 1);
    }
    QL_CHECK(looks_like_repo_id(repo_id),
             "model '{}' not found: no such file or folder (a Hugging Face model is given as "
             "ORG/NAME)",
             arg);

    const std::string cache_dir = hub_cache_dir(cache_dir_arg);
    const RepoCache cache(cache_dir, repo_id);
    const std::string pull_hint = fmt::format("run `quantlens pull {}{}` first", repo_id,
                                              revision.empty() ? "" : " --revision " + revision);
    QL_CHECK(fs::is_directory(cache.root() + "/snapshots", ec),
             "model '{}' is not a file or folder and is not in the local store {}; {}", arg,
             cache_dir, pull_hint);

    std::string commit;
    if (auto ref = cache.read_ref(revision.empty() ? "main" : revision)) {
        commit = *ref;
    } else if (!revision.empty() && fs::is_directory(cache.snapshot_dir(revision), ec)) {
        commit = revision;  // a commit hash
    } else if (revision.empty()) {
        commit = newest_snapshot(cache.root() + "/snapshots");
    }
    const std::string snapshot = commit.empty() ? "" : cache.snapshot_dir(commit);
    QL_CHECK(!snapshot.empty() && fs::is_directory(snapshot, ec),
             "model '{}': revision '{}' is not in the local store {}; {}", arg,
             revision.empty() ? "main" : revision, cache.root(), pull_hint);

    if (fs::exists(snapshot + "/config.json", ec)) return snapshot;
    std::vector<std::string> ggufs;
    for (const auto& e : fs::recursive_directory_iterator(snapshot, ec)) {
        const std::string p = e.path().string();
        if (p.size() > 5 && p.compare(p.size() - 5, 5, ".gguf") == 0) ggufs.push_back(p);
    }
    std::sort(ggufs.begin(), ggufs.end());
    if (ggufs.size() == 1) return ggufs[0];
    QL_CHECK(ggufs.size() <= 1,
             "model '{}': the local snapshot {} holds {} GGUF files; pass the path of one: {}", arg,
             snapshot, ggufs.size(), fmt::join(ggufs, ", "));
    return snapshot;
}

}  // namespace quantlens::hub
