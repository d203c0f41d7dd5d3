// Every file quantlens writes goes through OutputFile, so no command can lose data by
// overwriting, racing or following a planted link (issue 20).
//
// Contract:
//  - The bytes go to a temporary of this writer alone, `.NAME.qltmp.PID.RANDOM` in PATH's
//    folder, created with O_CREAT|O_EXCL|O_NOFOLLOW (mode 0666 & ~umask): nothing already
//    at that name, a symlink included, is ever opened.
//  - commit() flushes, fsyncs and renames the temporary to PATH. A reader sees the old file
//    or the whole new one, never a part; of two concurrent writers the last commit wins
//    whole.
//  - Overwrite::refuse: an existing PATH (any entry, a dangling symlink too) is an Error
//    "PATH: output exists; refusing to overwrite it (use --force)", when the OutputFile is
//    created and again at commit(), which never replaces a file that appeared meanwhile.
//    Overwrite::replace: PATH is replaced (a symlink at PATH is replaced, not followed); a
//    folder, device or pipe at PATH is an Error.
//  - The temporary is removed when the OutputFile is destroyed without commit() (an error was
//    thrown), and on SIGINT/SIGTERM once install_output_signal_cleanup() has run.
//  - Temporaries of PATH left by a killed process (the PID in the name no longer runs) are
//    removed when PATH is written again, with one line on stderr naming each.
// Errors are quantlens::Error naming PATH and what was expected.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace quantlens {

enum class Overwrite : bool { refuse = false, replace = true };

// `--force` as an Overwrite.
constexpr Overwrite overwrite_if(bool force) {
    return force ? Overwrite::replace : Overwrite::refuse;
}

class OutputFile {
  public:
    OutputFile(std::string path, Overwrite overwrite);
    ~OutputFile();  // without commit(): removes the temporary
    OutputFile(const OutputFile&) = delete;
    OutputFile& operator=(const OutputFile&) = delete;

    // Buffered; throws Error "PATH: write failed (disk full?): REASON".
    void write(const void* data, size_t n);
    void write(std::string_view text) { write(text.data(), text.size()); }
    void commit();

    const std::string& path() const { return path_; }
    const std::string& temp_path() const { return temp_; }

  private:
    void flush_buffer();
    void discard() noexcept;

    std::string path_, temp_;
    Overwrite overwrite_;
    int fd_ = -1;
    int slot_ = -1;  // in the signal-cleanup registry; -1 when it was full
    bool committed_ = false;
    std::vector<char> buffer_;
};

// The whole of `bytes` as PATH, through an OutputFile.
void write_output_file(const std::string& path, std::string_view bytes, Overwrite overwrite);

// The checks OutputFile makes when created, without creating anything: lets a command refuse
// an existing output, or one in a folder that does not exist, before hours of work rather
// than after.
void check_output_path(const std::string& path, Overwrite overwrite);

// A name in PATH's folder that no other writer uses (`.NAME.qltmp.PID.RANDOM`), for outputs
// that are not byte streams (the hub cache's symlinks); nothing is created.
std::string unique_temp_name(const std::string& path);

// Removes temporaries of PATH whose process no longer runs, one stderr line each; returns
// how many. OutputFile calls it; exposed for tests.
int remove_stale_temps(const std::string& path);

// SIGINT/SIGTERM remove every live temporary, then take their default action (the process
// ends by the signal). Installed only where the disposition is still the default, so an
// ignored signal stays ignored. Call once at program start.
void install_output_signal_cleanup();

// Unlinks every live temporary; async-signal-safe, for other signal handlers that end the
// process (jobs/runner.cpp's second Ctrl-C).
void remove_live_temps_now() noexcept;

}  // namespace quantlens
