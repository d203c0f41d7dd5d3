#include "hub/download.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"
#include "hub/checksum.h"

namespace quantlens::hub {
namespace {

struct Fd {
    int fd = -1;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

// The running digest of the partial file and how many of its bytes it has seen.
struct Hashing {
    std::unique_ptr<Digest> digest;
    int64_t hashed = 0;
};

std::unique_ptr<Digest> new_digest(const RepoFile& f) {
    if (f.is_lfs()) return std::make_unique<Digest>(Digest::Kind::sha256);
    if (f.size >= 0) return std::make_unique<Digest>(Digest::Kind::git_blob_sha1, f.size);
    return nullptr;  // no size, no git id to check: only the transfer itself is trusted
}

// Brings `h` to cover the first `offset` bytes of the file (after a resume, or when a retry
// found a different length on disk).
void hash_prefix(int fd, const std::string& path, int64_t offset, const RepoFile& f, Hashing& h) {
    if (h.digest && h.hashed == offset) return;
    h.digest = new_digest(f);
    h.hashed = 0;
    if (!h.digest) return;
    std::vector<char> buf(1 << 20);
    while (h.hashed < offset) {
        const size_t want = static_cast<size_t>(std::min<int64_t>(buf.size(), offset - h.hashed));
        const ssize_t n = ::pread(fd, buf.data(), want, h.hashed);
        QL_CHECK(n > 0, "{}: cannot read the partial download: {}", path,
                 n < 0 ? std::strerror(errno) : "unexpected end of file");
        h.digest->update(buf.data(), static_cast<size_t>(n));
        h.hashed += n;
    }
}

// "bytes 100-199/200" → 100; -1 when absent or malformed.
int64_t content_range_start(const std::string& header) {
    if (header.rfind("bytes ", 0) != 0) return -1;
    return std::atoll(header.c_str() + 6);
}

[[noreturn]] void fail_write(int err, const DownloadTarget& t, const DownloadContext& ctx,
                             int64_t on_disk) {
    if (err == ENOSPC || err == EDQUOT) {
        fail(
            "{}: disk full while writing {} ({} of {} bytes on disk at {}). Free some space "
            "(or pass --cache-dir on a larger disk) and run the same command again: the "
            "partial file is kept and the download resumes",
            ctx.repo_id, t.file.path, on_disk, t.file.size, t.incomplete_path);
    }
    fail("{}: cannot write {}: {}", ctx.repo_id, t.incomplete_path, std::strerror(err));
}

// Opens the partial file under an exclusive lock, so two pulls of the same repo never write
// the same file: the second waits, then finds the blob done (returns false) or continues
// where the first stopped. A lock won on a file that was renamed or removed meanwhile is
// dropped and taken again on the path's current file.
bool open_locked(const DownloadTarget& t, const DownloadContext& ctx, Fd& file) {
    for (;;) {
        file.fd = ::open(t.incomplete_path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        QL_CHECK(file.fd >= 0, "{}: cannot open {}: {}", ctx.repo_id, t.incomplete_path,
                 std::strerror(errno));
        while (::flock(file.fd, LOCK_EX) != 0) {
            QL_CHECK(errno == EINTR, "{}: cannot lock {}: {}", ctx.repo_id, t.incomplete_path,
                     std::strerror(errno));
        }
        struct stat held {
        }, now{};
        const bool current = ::fstat(file.fd, &held) == 0 &&
                             ::stat(t.incomplete_path.c_str(), &now) == 0 &&
                             held.st_ino == now.st_ino && held.st_dev == now.st_dev;
        if (::access(t.blob_path.c_str(), F_OK) == 0) {
            if (current) ::unlink(t.incomplete_path.c_str());  // the empty one we just made
            return false;
        }
        if (current) return true;
        ::close(file.fd);
        file.fd = -1;
    }
}

}  // namespace

int64_t download_blob(HttpClient& http, const DownloadTarget& t, const DownloadContext& ctx) {
    const RepoFile& f = t.file;
    int64_t fetched = 0;
    int64_t reported = 0;  // this file's share of ctx.bytes_on_disk
    auto report = [&](int64_t on_disk) {
        if (ctx.bytes_on_disk) ctx.bytes_on_disk->fetch_add(on_disk - reported);
        reported = on_disk;
    };

    for (int pass = 0;; ++pass) {  // pass 1 refetches after a checksum mismatch
        Hashing hashing;
        int64_t size_on_disk = 0;
        // Held from the first write to the rename, so no other pull can interleave.
        Fd file;
        for (int attempt = 0;; ++attempt) {
            if (file.fd >= 0) ::close(file.fd);
            file.fd = -1;
            if (!open_locked(t, ctx, file)) {
                report(std::max<int64_t>(f.size, 0));  // another pull finished it meanwhile
                return fetched;
            }
            struct stat st {};
            QL_CHECK(::fstat(file.fd, &st) == 0, "cannot stat {}", t.incomplete_path);
            int64_t offset = st.st_size;
            if (f.size >= 0 && offset > f.size) {  // not a prefix of this file: start over
                QL_CHECK(::ftruncate(file.fd, 0) == 0, "cannot truncate {}", t.incomplete_path);
                offset = 0;
            }
            hash_prefix(file.fd, t.incomplete_path, offset, f, hashing);
            report(offset);
            size_on_disk = offset;
            if (f.size >= 0 && offset == f.size) break;  // everything is already here

            int write_errno = 0;
            bool range_mismatch = false;
            bool first_chunk = true;
            auto sink = [&](const HttpResponse& head, const char* data, size_t n) {
                if (first_chunk) {
                    first_chunk = false;
                    if (head.status == 200 && offset > 0) {
                        // The server ignored the Range: the body is the whole file again.
                        if (::ftruncate(file.fd, 0) != 0) {
                            write_errno = errno;
                            return false;
                        }
                        offset = 0;
                        size_on_disk = 0;
                        hashing.digest = new_digest(f);
                        hashing.hashed = 0;
                    } else if (head.status == 206 &&
                               content_range_start(head.header("content-range")) != offset) {
                        range_mismatch = true;
                        return false;
                    }
                }
                for (size_t done = 0; done < n;) {
                    const ssize_t w = ::write(file.fd, data + done, n - done);
                    if (w < 0) {
                        if (errno == EINTR) continue;
                        write_errno = errno;
                        return false;
                    }
                    done += static_cast<size_t>(w);
                }
                if (hashing.digest) hashing.digest->update(data, n);
                hashing.hashed += static_cast<int64_t>(n);
                size_on_disk += static_cast<int64_t>(n);
                fetched += static_cast<int64_t>(n);
                report(size_on_disk);
                return true;
            };
            const HttpResponse r = http.get_to(t.url, offset, sink);
            if (write_errno != 0) fail_write(write_errno, t, ctx, size_on_disk);
            if (range_mismatch || r.status == 416) {
                // The partial file does not fit what the server has: start from zero.
                QL_CHECK(::ftruncate(file.fd, 0) == 0, "cannot truncate {}", t.incomplete_path);
                hashing = Hashing{};
                if (attempt < ctx.retry.max_retries) continue;
            }
            if (!r.transport_failed() && (r.status == 200 || r.status == 206)) break;
            const double wait = retry_delay(r, attempt, ctx.retry);
            if (wait < 0) {
                throw_http_error(r, ctx.endpoint, ctx.repo_id, ctx.revision, f.path, ctx.have_token,
                                 attempt);
            }
            std::this_thread::sleep_for(std::chrono::duration<double>(wait));
        }

        // Verify, then publish under the final name.
        std::string problem;
        if (f.size >= 0 && size_on_disk != f.size) {
            problem = fmt::format("size {} bytes, expected {}", size_on_disk, f.size);
        } else if (hashing.digest) {
            const std::string got = hashing.digest->hex();
            const std::string& want = f.is_lfs() ? f.sha256 : f.blob_id;
            if (got != want) {
                problem = fmt::format("{} {}, expected {}", f.is_lfs() ? "sha256" : "git blob id",
                                      got, want);
            }
        }
        if (problem.empty()) {
            QL_CHECK(std::rename(t.incomplete_path.c_str(), t.blob_path.c_str()) == 0,
                     "cannot rename {} to {}: {}", t.incomplete_path, t.blob_path,
                     std::strerror(errno));
            return fetched;
        }
        ::unlink(t.incomplete_path.c_str());
        report(0);
        if (pass == 0) {
            std::fprintf(stderr, "warning: %s: %s: checksum mismatch (%s); fetching it again\n",
                         ctx.repo_id.c_str(), f.path.c_str(), problem.c_str());
            continue;
        }
        fail(
            "{}: {}: checksum mismatch after a refetch ({}); the download is corrupted on the "
            "way (proxy, disk) or the Hub's listing is inconsistent",
            ctx.repo_id, f.path, problem);
    }
}

}  // namespace quantlens::hub
