#include "core/hash.h"

#include <xxhash.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include "core/error.h"

namespace quantlens {

std::string hash_bytes(std::span<const uint8_t> bytes) {
    return fmt::format("{:016x}", XXH64(bytes.data(), bytes.size(), 0));
}

std::string hash_string(const std::string& s) {
    return fmt::format("{:016x}", XXH64(s.data(), s.size(), 0));
}

namespace {

// What identifies a file's contents without reading them: a file rewritten in place gets a
// new modification time, a replaced one a new inode. A file modified in the last few seconds
// has no identity: timestamps are coarser than a rewrite can be (git's "racy" rule).
std::optional<std::string> file_identity(const std::string& path) {
    struct stat st {};
    QL_CHECK(::stat(path.c_str(), &st) == 0, "{}: cannot stat ({})", path, std::strerror(errno));
    if (std::time(nullptr) - st.st_mtim.tv_sec < 3) return std::nullopt;
    return fmt::format("{}\x1f{}\x1f{}\x1f{}\x1f{}.{}", path, st.st_dev, st.st_ino, st.st_size,
                       st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
}

// read() in 16 MB blocks: the same bytes in the same order as the mmap this replaced, so the same
// hashes. (A ring of reader threads was tried on the 8B sweep: no measurable gain; see
// bench/RESULTS.md, fourth session.)
void hash_file_into(XXH64_state_t* state, const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    QL_CHECK(fd >= 0, "{}: cannot open ({})", path, std::strerror(errno));
    std::unique_ptr<int, void (*)(int*)> guard(new int(fd), [](int* f) {
        ::close(*f);
        delete f;
    });
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    std::vector<uint8_t> buf(size_t{16} << 20);
    for (;;) {
        const ssize_t n = ::read(fd, buf.data(), buf.size());
        if (n < 0 && errno == EINTR) continue;
        QL_CHECK(n >= 0, "{}: read failed ({})", path, std::strerror(errno));
        if (n == 0) break;
        XXH64_update(state, buf.data(), static_cast<size_t>(n));
    }
}

}  // namespace

std::string hash_files(const std::vector<std::string>& paths) {
    // One process often hashes the same model twice (a job is created, then run); a model of
    // 16 GB costs seconds each time. Memoized on the files' identities, never on paths alone.
    static std::mutex mutex;
    static std::map<std::string, std::string> memo;
    std::string key;
    bool memoizable = true;
    for (const auto& p : paths) {
        const std::optional<std::string> id = file_identity(p);
        memoizable = memoizable && id.has_value();
        if (id) key += *id + '\x1e';
    }
    if (memoizable) {
        std::lock_guard<std::mutex> lock(mutex);
        if (const auto it = memo.find(key); it != memo.end()) return it->second;
    }
    XXH64_state_t* state = XXH64_createState();
    std::unique_ptr<XXH64_state_t, XXH_errorcode (*)(XXH64_state_t*)> state_guard(state,
                                                                                  XXH64_freeState);
    XXH64_reset(state, 0);
    for (const auto& p : paths) hash_file_into(state, p);
    const std::string h = fmt::format("{:016x}", XXH64_digest(state));
    if (memoizable) {
        std::lock_guard<std::mutex> lock(mutex);
        memo[key] = h;
    }
    return h;
}

}  // namespace quantlens
