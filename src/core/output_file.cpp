#include "core/output_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "core/error.h"

namespace quantlens {
namespace {

namespace fs = std::filesystem;

// ---- registry of live temporaries, read by the signal handler -------------------------
// A fixed table, so the handler needs no allocation and no lock: a slot is claimed (1),
// filled, then published (2); the handler unlinks only published slots.
constexpr int kSlots = 128;
constexpr size_t kSlotPath = 4096;
std::array<std::atomic<int>, kSlots> g_slot_state{};
char g_slot_path[kSlots][kSlotPath];
static_assert(std::atomic<int>::is_always_lock_free, "read from a signal handler");

int register_temp(const std::string& path) {
    if (path.size() >= kSlotPath) return -1;
    for (int i = 0; i < kSlots; ++i) {
        int expected = 0;
        if (!g_slot_state[i].compare_exchange_strong(expected, 1)) continue;
        std::memcpy(g_slot_path[i], path.c_str(), path.size() + 1);
        g_slot_state[i].store(2, std::memory_order_release);
        return i;
    }
    return -1;  // the stale-temporary sweep of the next run still finds it
}

void unregister_temp(int slot) {
    if (slot >= 0) g_slot_state[slot].store(0, std::memory_order_release);
}

extern "C" void on_terminating_signal(int sig) {
    remove_live_temps_now();
    ::signal(sig, SIG_DFL);
    ::raise(sig);  // blocked until the handler returns, then ends the process
}

// The temporary's prefix; the name is cut so prefix + PID + random stays under NAME_MAX.
std::string temp_prefix(const fs::path& target) {
    std::string name = target.filename().string();
    if (name.size() > 200) name.resize(200);
    return "." + name + ".qltmp.";
}

fs::path folder_of(const fs::path& target) {
    return target.has_parent_path() ? target.parent_path() : fs::path(".");
}

uint64_t random_u64() {
    uint64_t r = 0;
    if (::getrandom(&r, sizeof r, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof r)) {
        static std::atomic<uint64_t> counter{0};
        r = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
            (counter.fetch_add(1) * 0x9e3779b97f4a7c15ULL);
    }
    return r;
}

std::string errno_text(int err) {
    return std::strerror(err);
}

void fsync_folder(const fs::path& folder) {
    // Makes the rename durable; a filesystem that cannot fsync a folder is not an error.
    const int dfd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return;
    ::fsync(dfd);
    ::close(dfd);
}

}  // namespace

void remove_live_temps_now() noexcept {
    for (int i = 0; i < kSlots; ++i)
        if (g_slot_state[i].load(std::memory_order_acquire) == 2) ::unlink(g_slot_path[i]);
}

void install_output_signal_cleanup() {
    for (int sig : {SIGINT, SIGTERM}) {
        struct sigaction old = {};
        if (sigaction(sig, nullptr, &old) != 0 || old.sa_handler != SIG_DFL) continue;
        struct sigaction sa = {};
        sa.sa_handler = on_terminating_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(sig, &sa, nullptr);
    }
}

std::string unique_temp_name(const std::string& path) {
    const fs::path target(path);
    return (folder_of(target) /
            fmt::format("{}{}.{:016x}", temp_prefix(target), ::getpid(), random_u64()))
        .string();
}

int remove_stale_temps(const std::string& path) {
    const fs::path target(path);
    const fs::path folder = folder_of(target);
    const std::string prefix = temp_prefix(target);
    DIR* dir = ::opendir(folder.c_str());
    if (!dir) return 0;
    int removed = 0;
    while (const dirent* e = ::readdir(dir)) {
        const std::string_view name(e->d_name);
        if (!name.starts_with(prefix)) continue;
        // PID.RANDOM after the prefix; anything else is not ours.
        const std::string_view rest = name.substr(prefix.size());
        const size_t dot = rest.find('.');
        if (dot == std::string_view::npos || dot == 0 || dot > 10) continue;
        long pid = 0;
        bool digits = true;
        for (char c : rest.substr(0, dot)) {
            if (c < '0' || c > '9') digits = false;
            pid = pid * 10 + (c - '0');
        }
        if (!digits || pid <= 0 || pid > INT32_MAX) continue;
        if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // still runs
        const fs::path stale = folder / std::string(name);
        if (::unlink(stale.c_str()) == 0) {
            fmt::print(stderr,
                       "quantlens: removed {}, a temporary file left by process {} (no longer "
                       "running)\n",
                       stale.string(), pid);
            ++removed;
        }
    }
    ::closedir(dir);
    return removed;
}

void check_output_path(const std::string& path, Overwrite overwrite) {
    QL_CHECK(!path.empty(), "output path is empty: expected a file name");
    struct stat st = {};
    if (::lstat(path.c_str(), &st) != 0) {
        const fs::path folder = folder_of(fs::path(path));
        std::error_code ec;
        QL_CHECK(fs::is_directory(folder, ec), "{}: folder {} does not exist", path,
                 folder.string());
        return;
    }
    QL_CHECK(overwrite == Overwrite::replace,
             "{}: output exists; refusing to overwrite it (use --force)", path);
    QL_CHECK(!S_ISDIR(st.st_mode), "{}: is a folder; expected a file path for the output", path);
    // A device or pipe would be replaced by a plain file (/dev/null as root): never wanted.
    QL_CHECK(S_ISREG(st.st_mode) || S_ISLNK(st.st_mode),
             "{}: is not a regular file; expected a file path for the output", path);
}

OutputFile::OutputFile(std::string path, Overwrite overwrite)
    : path_(std::move(path)), overwrite_(overwrite) {
    check_output_path(path_, overwrite_);
    remove_stale_temps(path_);
    int err = 0;
    for (int attempt = 0; attempt < 16 && fd_ < 0; ++attempt) {
        temp_ = unique_temp_name(path_);
        // Registered before it exists: a signal right after open() must still find it.
        slot_ = register_temp(temp_);
        fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
        if (fd_ >= 0) break;
        err = errno;
        unregister_temp(slot_);
        slot_ = -1;
        if (err != EEXIST) break;
    }
    if (fd_ < 0) {
        temp_.clear();  // not ours: the destructor must not unlink it
        fail("{}: cannot create a file in {}: {}", path_, folder_of(fs::path(path_)).string(),
             errno_text(err));
    }
    buffer_.reserve(1 << 20);
}

OutputFile::~OutputFile() {
    if (!committed_) discard();
}

void OutputFile::discard() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    // Unlinked before it leaves the registry, so a signal in between still removes it.
    if (!temp_.empty()) ::unlink(temp_.c_str());
    unregister_temp(slot_);
    slot_ = -1;
}

namespace {

// write(2) until all n bytes are out, retrying interrupted and partial writes.
void write_all(int fd, const char* p, size_t n, const std::string& path) {
    while (n > 0) {
        const ssize_t k = ::write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) fail("{}: write failed (disk full?): {}", path, errno_text(errno));
        p += k;
        n -= static_cast<size_t>(k);
    }
}

}  // namespace

void OutputFile::write(const void* data, size_t n) {
    QL_ASSERT(fd_ >= 0 && !committed_);
    if (buffer_.size() + n > buffer_.capacity()) flush_buffer();
    const char* p = static_cast<const char*>(data);
    if (n >= buffer_.capacity()) {
        write_all(fd_, p, n, path_);  // large pieces (tensor data) go straight to the file
        return;
    }
    buffer_.insert(buffer_.end(), p, p + n);
}

void OutputFile::flush_buffer() {
    write_all(fd_, buffer_.data(), buffer_.size(), path_);
    buffer_.clear();
}

void OutputFile::commit() {
    QL_ASSERT(fd_ >= 0 && !committed_);
    flush_buffer();
    if (::fsync(fd_) != 0 && errno != EINVAL)
        fail("{}: write failed (disk full?): {}", path_, errno_text(errno));
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail("{}: write failed (disk full?): {}", path_, errno_text(errno));

    if (overwrite_ == Overwrite::replace) {
        if (::rename(temp_.c_str(), path_.c_str()) != 0)
            fail("{}: cannot move the finished file into place: {}", path_, errno_text(errno));
    } else {
        // Never replaces a file that appeared while this one was written.
        int rc = ::renameat2(AT_FDCWD, temp_.c_str(), AT_FDCWD, path_.c_str(), RENAME_NOREPLACE);
        if (rc != 0 && (errno == EINVAL || errno == ENOSYS || errno == ENOTSUP)) {
            rc = ::link(temp_.c_str(), path_.c_str());  // filesystems without NOREPLACE
            if (rc == 0) ::unlink(temp_.c_str());
        }
        if (rc != 0) {
            const int err = errno;
            QL_CHECK(err != EEXIST,
                     "{}: output exists (it appeared while this run was writing); refusing to "
                     "overwrite it (use --force)",
                     path_);
            fail("{}: cannot move the finished file into place: {}", path_, errno_text(err));
        }
    }
    committed_ = true;
    unregister_temp(slot_);
    slot_ = -1;
    fsync_folder(folder_of(fs::path(path_)));
}

void write_output_file(const std::string& path, std::string_view bytes, Overwrite overwrite) {
    OutputFile out(path, overwrite);
    out.write(bytes);
    out.commit();
}

}  // namespace quantlens
