#include "hub/checksum.h"

#include <openssl/evp.h>

#include <cstdio>
#include <vector>

#include "core/error.h"

namespace quantlens::hub {

struct Digest::Impl {
    EVP_MD_CTX* ctx = nullptr;
    bool finished = false;
};

Digest::Digest(Kind kind, int64_t content_size) : impl_(std::make_unique<Impl>()) {
    impl_->ctx = EVP_MD_CTX_new();
    QL_ASSERT(impl_->ctx != nullptr);
    const EVP_MD* md = kind == Kind::sha256 ? EVP_sha256() : EVP_sha1();
    QL_ASSERT(EVP_DigestInit_ex(impl_->ctx, md, nullptr) == 1);
    if (kind == Kind::git_blob_sha1) {
        const std::string header = "blob " + std::to_string(content_size);
        update(header.data(), header.size() + 1);  // includes the terminating '\0'
    }
}

Digest::~Digest() {
    EVP_MD_CTX_free(impl_->ctx);
}

void Digest::update(const void* data, size_t n) {
    QL_ASSERT(!impl_->finished);
    QL_ASSERT(EVP_DigestUpdate(impl_->ctx, data, n) == 1);
}

std::string Digest::hex() {
    QL_ASSERT(!impl_->finished);
    impl_->finished = true;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    QL_ASSERT(EVP_DigestFinal_ex(impl_->ctx, md, &len) == 1);
    static const char* digits = "0123456789abcdef";
    std::string out(2 * len, '0');
    for (unsigned i = 0; i < len; ++i) {
        out[2 * i] = digits[md[i] >> 4];
        out[2 * i + 1] = digits[md[i] & 15];
    }
    return out;
}

std::string sha256_hex(const void* data, size_t n) {
    Digest d(Digest::Kind::sha256);
    d.update(data, n);
    return d.hex();
}

std::string sha256_file(const std::string& path) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    QL_CHECK(f != nullptr, "{}: cannot open for reading", path);
    Digest d(Digest::Kind::sha256);
    std::vector<char> buf(1 << 20);
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) d.update(buf.data(), n);
    const bool bad = std::ferror(f) != 0;
    std::fclose(f);
    QL_CHECK(!bad, "{}: read error", path);
    return d.hex();
}

}  // namespace quantlens::hub
