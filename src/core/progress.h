// Terminal progress for long work: a bar with count, rate and ETA on stderr when it is a
// terminal (a plain line every few seconds otherwise), plus an optional observer so the
// job store and the web app see the same progress.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace quantlens {

class Progress {
public:
    using Observer = std::function<void(int64_t done, int64_t total)>;

    Progress(std::string label, int64_t total, std::string unit = "it");
    ~Progress();
    Progress(const Progress&) = delete;
    Progress& operator=(const Progress&) = delete;

    void advance(int64_t n = 1);
    void set(int64_t done);
    void set_total(int64_t total);
    void set_observer(Observer observer) { observer_ = std::move(observer); }
    void finish();  // prints the final line (idempotent)

    int64_t done() const { return done_; }
    double elapsed_seconds() const;

    // Silence all progress output (tests, --quiet, --json on stdout is unaffected).
    static void set_enabled(bool enabled);

private:
    void render(bool final_line);

    std::string label_, unit_;
    int64_t total_, done_ = 0;
    std::chrono::steady_clock::time_point start_, last_render_;
    Observer observer_;
    bool finished_ = false;
    bool tty_;
};

}  // namespace quantlens
