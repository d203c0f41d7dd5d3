// QUANTLENS_PROFILE=1: where the wall time of a long command goes, as "profile: ..." lines on
// stderr. Off by default; costs one clock read per phase when on.
#pragma once

#include <chrono>

namespace quantlens {

bool profiling();

// Wall time between consecutive laps, one line per lap.
class PhaseClock {
  public:
    void lap(const char* phase);

  private:
    std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

// Sums intervals of one kind of work spread through a loop (start()/stop() pairs).
class PhaseSum {
  public:
    void start() { t0_ = std::chrono::steady_clock::now(); }
    void stop() {
        seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    }
    double seconds() const { return seconds_; }

  private:
    std::chrono::steady_clock::time_point t0_{};
    double seconds_ = 0;
};

}  // namespace quantlens
