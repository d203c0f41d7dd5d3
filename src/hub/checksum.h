// Streaming digests that verify Hub downloads: SHA-256 (the LFS object id of large files)
// and git's blob SHA-1 (the object id of small, non-LFS files: SHA-1 over
// "blob <size>\0" followed by the content). Both go through OpenSSL's libcrypto.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace quantlens::hub {

class Digest {
  public:
    enum class Kind { sha256, git_blob_sha1 };

    // git_blob_sha1 needs the content size up front (it is part of the hashed header).
    explicit Digest(Kind kind, int64_t content_size = 0);
    ~Digest();
    Digest(const Digest&) = delete;
    Digest& operator=(const Digest&) = delete;

    void update(const void* data, size_t n);
    std::string hex();  // finishes the digest; lower-case hex

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

std::string sha256_hex(const void* data, size_t n);
// SHA-256 of a file's whole content (streamed); throws Error when it cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace quantlens::hub
