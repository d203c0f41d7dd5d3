#include <gtest/gtest.h>

#include <xxhash.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"
#include "core/hash.h"

using namespace quantlens;
namespace fs = std::filesystem;

namespace {
std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<uint8_t> v(n);
    for (auto& b : v) b = static_cast<uint8_t>(rng());
    return v;
}
void write_bytes(const fs::path& p, const std::vector<uint8_t>& v) {
    std::ofstream(p, std::ios::binary)
        .write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size()));
}
fs::path scratch(const char* name) {
    const fs::path dir = fs::temp_directory_path() / fmt::format("ql-hash-{}", ::getpid());
    fs::create_directories(dir);
    return dir / name;
}
}  // namespace

// The block reader must give XXH64 of the bytes in order: stored job hashes from
// earlier versions stay valid. 16 MB blocks, so 41 MB + a tail crosses every slot boundary case.
TEST(HashFiles, EqualsXxh64OfTheConcatenatedBytes) {
    const auto a = random_bytes((size_t{41} << 20) + 12345, 1), b = random_bytes(777, 2);
    const fs::path pa = scratch("a.bin"), pb = scratch("b.bin"), empty = scratch("empty.bin");
    write_bytes(pa, a);
    write_bytes(pb, b);
    write_bytes(empty, {});
    std::vector<uint8_t> both = a;
    both.insert(both.end(), b.begin(), b.end());
    EXPECT_EQ(hash_files({pa.string(), pb.string()}), hash_bytes(both));
    EXPECT_EQ(hash_files({pa.string()}), fmt::format("{:016x}", XXH64(a.data(), a.size(), 0)));
    EXPECT_EQ(hash_files({empty.string()}), hash_bytes({}));
    fs::remove_all(pa.parent_path());
}

// A file rewritten in place (same size, same inode) is hashed again, not served from the memo.
TEST(HashFiles, ARewrittenFileIsHashedAgain) {
    const fs::path p = scratch("rewritten.bin");
    write_bytes(p, random_bytes(4096, 3));
    const std::string first = hash_files({p.string()});
    write_bytes(p, random_bytes(4096, 4));
    EXPECT_NE(hash_files({p.string()}), first);
    EXPECT_THROW(hash_files({(p.parent_path() / "missing.bin").string()}), Error);
    fs::remove_all(p.parent_path());
}
