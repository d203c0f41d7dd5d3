// Content hashes (xxHash64, hex) that identify models and inputs in the job store, so a
// job notices when its model or text changed on disk.
#pragma once

#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <vector>

namespace quantlens {

std::string hash_bytes(std::span<const uint8_t> bytes);
std::string hash_string(const std::string& s);
// Hash of several files' contents (in the given order), read in large blocks. Memoized per
// process on each file's path, inode, size and modification time.
std::string hash_files(const std::vector<std::string>& paths);

// hash_files of a source's files, computed on the first call and then kept for the holder's
// lifetime (later calls neither read nor stat the files); safe to call from several threads.
class FilesHashOnce {
  public:
    const std::string& get(const std::vector<std::string>& paths) const {
        std::call_once(once_, [&] { hash_ = hash_files(paths); });
        return hash_;
    }

  private:
    mutable std::once_flag once_;
    mutable std::string hash_;
};

}  // namespace quantlens
