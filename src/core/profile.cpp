#include "core/profile.h"

#include <cstdio>
#include <cstdlib>

namespace quantlens {

bool profiling() {
    static const bool on = std::getenv("QUANTLENS_PROFILE") != nullptr;
    return on;
}

void PhaseClock::lap(const char* phase) {
    if (!profiling()) return;
    const auto now = std::chrono::steady_clock::now();
    std::fprintf(stderr, "profile: %s %.1f s\n", phase,
                 std::chrono::duration<double>(now - last_).count());
    last_ = now;
}

}  // namespace quantlens
