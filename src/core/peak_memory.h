// Peak host memory of this process: the resident-set high-water mark the kernel keeps
// (getrusage ru_maxrss), which counts the pages of memory-mapped weights a run touched as
// well as its own buffers — what `/usr/bin/time -v` reports as "Maximum resident set size".
#pragma once

#include <cstdint>
#include <string>

namespace quantlens {

uint64_t peak_rss_bytes();  // 0 where the platform does not report it
// "48.5 MB" (10^6 bytes), or "unknown".
std::string peak_rss_text();

}  // namespace quantlens
