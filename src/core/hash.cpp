#include "core/hash.h"

#include <xxhash.h>

#include <fmt/format.h>

#include "core/mmap_file.h"

namespace quantlens {

std::string hash_bytes(std::span<const uint8_t> bytes) {
    return fmt::format("{:016x}", XXH64(bytes.data(), bytes.size(), 0));
}

std::string hash_string(const std::string& s) {
    return fmt::format("{:016x}", XXH64(s.data(), s.size(), 0));
}

std::string hash_files(const std::vector<std::string>& paths) {
    XXH64_state_t* state = XXH64_createState();
    XXH64_reset(state, 0);
    for (const auto& p : paths) {
        MappedFile f(p);
        XXH64_update(state, f.data(), f.size());
    }
    uint64_t h = XXH64_digest(state);
    XXH64_freeState(state);
    return fmt::format("{:016x}", h);
}

}  // namespace quantlens
