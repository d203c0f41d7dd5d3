// Read-only memory-mapped file (RAII). Weights stay in the page cache instead of being
// copied; a model opened twice shares pages. Errors name the path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace quantlens {

class MappedFile {
  public:
    MappedFile() = default;
    explicit MappedFile(const std::string& path);  // throws Error if it cannot be opened
    ~MappedFile();
    MappedFile(MappedFile&& other) noexcept;
    MappedFile& operator=(MappedFile&& other) noexcept;
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const uint8_t* data() const { return data_; }
    size_t size() const { return size_; }
    std::span<const uint8_t> bytes() const { return {data_, size_}; }
    const std::string& path() const { return path_; }

  private:
    std::string path_;
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
};

// Reads a whole (small) file into a string; throws Error naming the path.
std::string read_text_file(const std::string& path);

// `path` made absolute when it names something that exists, else unchanged (a Hub id such
// as "org/name" stays as given). Jobs store inputs this way so that `jobs resume` works from
// any folder.
std::string absolute_if_exists(const std::string& path);

}  // namespace quantlens
