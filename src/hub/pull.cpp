#include "hub/pull.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <filesystem>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "core/error.h"
#include "core/progress.h"
#include "hub/cache.h"
#include "hub/download.h"
#include "hub/env.h"
#include "hub/repo.h"

namespace quantlens::hub {
namespace {

namespace fs = std::filesystem;

int64_t file_size_or(const std::string& path, int64_t fallback) {
    std::error_code ec;
    const auto n = fs::file_size(path, ec);
    return ec ? fallback : static_cast<int64_t>(n);
}

// A blob under its final name was verified when it was written; the size check catches a
// file truncated since.
bool blob_present(const std::string& path, const RepoFile& f) {
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) return false;
    return f.size < 0 || file_size_or(path, -1) == f.size;
}

void warn_if_short_of_space(const std::string& dir, int64_t needed) {
    struct statvfs sv {};
    if (::statvfs(dir.c_str(), &sv) != 0) return;
    const auto free_bytes = static_cast<int64_t>(sv.f_bavail) * static_cast<int64_t>(sv.f_frsize);
    if (free_bytes < needed) {
        std::fprintf(stderr,
                     "warning: %s has %.2f GB free but the download needs %.2f GB more; it "
                     "will stop when the disk is full and can be resumed\n",
                     dir.c_str(), free_bytes / 1e9, needed / 1e9);
    }
}

PullResult pull_impl(const PullOptions& opt, const std::string& token) {
    check_repo_id(opt.repo_id);
    QL_CHECK(!opt.revision.empty() && opt.revision.front() != '/' &&
                 opt.revision.find("..") == std::string::npos,
             "--revision '{}': expected a branch, tag or commit name", opt.revision);
    QL_CHECK(opt.jobs >= 1, "--jobs must be at least 1 (got {})", opt.jobs);
    const std::string endpoint = hub_endpoint(opt.endpoint);
    const std::string cache_dir = hub_cache_dir(opt.cache_dir);
    const bool have_token = !token.empty();

    HttpClient api(token);
    const RepoInfo info =
        fetch_repo_info(api, endpoint, opt.repo_id, opt.revision, have_token, opt.retry);
    const std::vector<RepoFile> files = select_files(info, opt.include);

    RepoCache cache(cache_dir, opt.repo_id);
    cache.create_dirs();

    PullResult result;
    result.commit = info.commit;
    result.snapshot_dir = cache.snapshot_dir(info.commit);
    std::vector<DownloadTarget> targets;
    int64_t remaining = 0;
    std::atomic<int64_t> on_disk{0};
    for (const auto& f : files) {
        result.files.push_back(f.path);
        result.bytes_total += std::max<int64_t>(f.size, 0);
        const std::string blob = cache.blob_path(f.etag());
        if (blob_present(blob, f)) {
            ++result.files_already_present;
            on_disk += std::max<int64_t>(f.size, 0);
            continue;
        }
        // Two paths can share one blob (identical content): download it once.
        if (std::any_of(targets.begin(), targets.end(),
                        [&](const DownloadTarget& t) { return t.blob_path == blob; }))
            continue;
        const std::string partial = cache.incomplete_path(f.etag());
        remaining += std::max<int64_t>(f.size - file_size_or(partial, 0), 0);
        targets.push_back({f, file_url(endpoint, opt.repo_id, info.commit, f.path), blob, partial});
    }
    warn_if_short_of_space(cache.root() + "/blobs", remaining);

    // Workers take files from a shared index; the first error stops new files from starting
    // while the ones in flight finish (their bytes are not wasted), then it is rethrown.
    DownloadContext ctx{endpoint, opt.repo_id, opt.revision, have_token, opt.retry, &on_disk};
    std::atomic<size_t> next{0};
    std::atomic<int64_t> fetched{0};
    std::atomic<bool> stop{false};
    std::exception_ptr first_error;
    std::mutex mu;
    std::condition_variable cv;
    int running = 0;
    const int n_workers = std::min<int>(opt.jobs, static_cast<int>(targets.size()));
    std::vector<std::thread> workers;
    for (int w = 0; w < n_workers; ++w) {
        ++running;
        workers.emplace_back([&] {
            HttpClient http(token);
            for (size_t i; !stop && (i = next++) < targets.size();) {
                try {
                    fetched += download_blob(http, targets[i], ctx);
                } catch (...) {
                    std::lock_guard lock(mu);
                    if (!first_error) first_error = std::current_exception();
                    stop = true;
                }
            }
            std::lock_guard lock(mu);
            --running;
            cv.notify_all();
        });
    }
    {
        // Counted in kB, or MB from a gigabyte on, so the bar's numbers stay readable.
        const bool big = result.bytes_total >= 1'000'000'000;
        const int64_t unit = big ? 1'000'000 : 1'000;
        Progress bar(fmt::format("pull {}", opt.repo_id), (result.bytes_total + unit - 1) / unit,
                     big ? "MB" : "kB");
        std::unique_lock lock(mu);
        while (running > 0) {
            cv.wait_for(lock, std::chrono::milliseconds(200));
            if (opt.progress) bar.set(on_disk.load() / unit);
        }
        if (opt.progress && !first_error) {
            bar.set((on_disk.load() + unit - 1) / unit);
            bar.finish();
        }
    }
    for (auto& t : workers) t.join();
    if (first_error) std::rethrow_exception(first_error);

    for (const auto& f : files) cache.link_snapshot(info.commit, f.path, f.etag());
    cache.write_ref(opt.revision, info.commit);
    result.bytes_fetched = fetched.load();
    return result;
}

}  // namespace

PullResult pull(const PullOptions& options) {
    const std::string token = resolve_token(options.token);
    try {
        return pull_impl(options, token);
    } catch (const Error& e) {
        // Belt and braces: no message leaves this module with the token in it.
        throw Error(redact_token(e.what(), token));
    }
}

}  // namespace quantlens::hub
