#include "core/peak_memory.h"

#include <sys/resource.h>

#include <fmt/format.h>

namespace quantlens {

uint64_t peak_rss_bytes() {
    rusage usage{};
    if (getrusage(RUSAGE_SELF, &usage) != 0) return 0;
    return static_cast<uint64_t>(usage.ru_maxrss) * 1024;  // Linux reports kilobytes
}

std::string peak_rss_text() {
    const uint64_t bytes = peak_rss_bytes();
    return bytes ? fmt::format("{:.1f} MB", static_cast<double>(bytes) * 1e-6) : "unknown";
}

}  // namespace quantlens
