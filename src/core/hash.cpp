#include "core/hash.h"

#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
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

// The file is read in blocks by a few threads (a ring of buffers) while this thread hashes them
// in order: XXH64 is sequential, but one thread copying from the page cache is three times
// slower than it. The same bytes in the same order, so the same hash as a plain read.
void hash_file_into(XXH64_state_t* state, const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    QL_CHECK(fd >= 0, "{}: cannot open ({})", path, std::strerror(errno));
    std::unique_ptr<int, void (*)(int*)> guard(new int(fd), [](int* f) {
        ::close(*f);
        delete f;
    });
    struct stat st {};
    QL_CHECK(::fstat(fd, &st) == 0, "{}: cannot stat ({})", path, std::strerror(errno));
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    constexpr size_t block = size_t{16} << 20;
    const auto size = static_cast<uint64_t>(st.st_size);
    const size_t n_blocks = static_cast<size_t>((size + block - 1) / block);
    const size_t n_slots = std::min<size_t>(8, std::max<size_t>(1, n_blocks));
    const unsigned n_readers = static_cast<unsigned>(
        std::min<size_t>(n_slots, std::clamp(std::thread::hardware_concurrency(), 1u, 4u)));

    struct Slot {
        std::vector<uint8_t> bytes;
        size_t n = 0;
        std::string error;
        bool ready = false;
    };
    std::vector<Slot> slots(n_slots);
    std::mutex mutex;
    std::condition_variable cv;
    size_t next_block = 0, hashed = 0;  // under mutex
    bool stop = false;

    auto reader = [&] {
        std::vector<uint8_t> buf(block);
        for (;;) {
            size_t b;
            {
                std::unique_lock<std::mutex> lock(mutex);
                // Block b may be read once block b - n_slots, which used its slot, is hashed.
                cv.wait(lock, [&] {
                    return stop || next_block >= n_blocks || next_block < hashed + n_slots;
                });
                if (stop || next_block >= n_blocks) return;
                b = next_block++;
            }
            const uint64_t off = static_cast<uint64_t>(b) * block;
            const size_t want = static_cast<size_t>(std::min<uint64_t>(block, size - off));
            size_t got = 0;
            std::string error;
            while (got < want) {
                const ssize_t n =
                    ::pread(fd, buf.data() + got, want - got, static_cast<off_t>(off + got));
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) {
                    error = n < 0 ? std::strerror(errno) : "file shrank while being read";
                    break;
                }
                got += static_cast<size_t>(n);
            }
            std::lock_guard<std::mutex> lock(mutex);
            Slot& slot = slots[b % n_slots];
            slot.bytes.swap(buf);
            if (buf.size() < block) buf.resize(block);
            slot.n = got;
            slot.error = std::move(error);
            slot.ready = true;
            cv.notify_all();
        }
    };
    std::vector<std::thread> readers;
    for (unsigned i = 0; i < n_readers; ++i) readers.emplace_back(reader);
    std::string error;
    for (size_t b = 0; b < n_blocks && error.empty(); ++b) {
        Slot& slot = slots[b % n_slots];
        std::vector<uint8_t> bytes;
        size_t n = 0;
        {
            std::unique_lock<std::mutex> lock(mutex);
            cv.wait(lock, [&] { return slot.ready; });
            bytes.swap(slot.bytes);
            n = slot.n;
            error = slot.error;
            slot.ready = false;
        }
        if (error.empty()) XXH64_update(state, bytes.data(), n);
        std::lock_guard<std::mutex> lock(mutex);
        slot.bytes.swap(bytes);  // the buffer goes back for a later block
        ++hashed;
        cv.notify_all();
    }
    {
        std::lock_guard<std::mutex> lock(mutex);
        stop = true;
        cv.notify_all();
    }
    for (auto& t : readers) t.join();
    QL_CHECK(error.empty(), "{}: read failed ({})", path, error);
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
