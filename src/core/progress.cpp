#include "core/progress.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>

#include <fmt/format.h>

namespace quantlens {
namespace {
std::atomic<bool> g_enabled{true};

std::string format_duration(double s) {
    if (s < 0 || s > 1e7) return "--:--";
    int total = static_cast<int>(s + 0.5);
    if (total >= 3600)
        return fmt::format("{}:{:02}:{:02}", total / 3600, (total / 60) % 60, total % 60);
    return fmt::format("{:02}:{:02}", total / 60, total % 60);
}
}  // namespace

void Progress::set_enabled(bool enabled) {
    g_enabled.store(enabled);
}

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      start_(std::chrono::steady_clock::now()),
      last_render_(start_),
      tty_(::isatty(STDERR_FILENO) != 0) {}

Progress::~Progress() {
    if (!finished_ && done_ > 0) finish();
}

double Progress::elapsed_seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::advance(int64_t n) {
    set(done_ + n);
}

void Progress::set_total(int64_t total) {
    total_ = total;
}

void Progress::set(int64_t done) {
    done_ = done;
    if (observer_) observer_(done_, total_);
    auto now = std::chrono::steady_clock::now();
    const double since = std::chrono::duration<double>(now - last_render_).count();
    const bool complete = total_ > 0 && done_ >= total_;
    // Off a terminal every line stays in the log: the complete line is left to finish().
    if ((since >= (tty_ ? 0.1 : 5.0) && !(complete && !tty_)) || (complete && tty_)) {
        last_render_ = now;
        render(false);
    }
}

void Progress::finish() {
    if (finished_) return;
    finished_ = true;
    render(true);
}

void Progress::render(bool final_line) {
    if (!g_enabled.load()) return;
    const double elapsed = elapsed_seconds();
    const double rate = elapsed > 0 ? static_cast<double>(done_) / elapsed : 0.0;
    const double eta = (rate > 0 && total_ > 0) ? static_cast<double>(total_ - done_) / rate : -1;
    std::string line;
    if (total_ > 0) {
        const double frac = std::min(1.0, static_cast<double>(done_) / static_cast<double>(total_));
        const int width = 28;
        const int filled = static_cast<int>(frac * width);
        std::string bar(static_cast<size_t>(filled), '#');
        bar.append(static_cast<size_t>(width - filled), '.');
        line = fmt::format("{} [{}] {:3.0f}% {}/{} {} | {:.1f} {}/s | {} elapsed, ETA {}", label_,
                           bar, frac * 100.0, done_, total_, unit_, rate, unit_,
                           format_duration(elapsed), final_line ? "00:00" : format_duration(eta));
    } else {
        line = fmt::format("{} {} {} | {:.1f} {}/s | {}", label_, done_, unit_, rate, unit_,
                           format_duration(elapsed));
    }
    if (tty_) {
        std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), final_line ? "\n" : "");
    } else {
        std::fprintf(stderr, "%s\n", line.c_str());
    }
    std::fflush(stderr);
}

}  // namespace quantlens
