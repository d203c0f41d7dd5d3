// Paths that arrive over HTTP are untrusted: they are resolved (symlinks followed) and
// accepted only when they land inside one of the allowed roots (the server's working
// directory and --models-dir). Names of files the server writes (recipes) are checked
// against a strict pattern instead, so no separator or ".." can reach the filesystem.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace quantlens::server {

class PathPolicy {
  public:
    // Roots are canonicalized once; a root that does not exist throws Error.
    explicit PathPolicy(std::vector<std::string> roots);

    // Resolves `requested` (absolute, or relative to the first root) and returns the canonical
    // path when it exists, lies inside a root and is a directory or a regular file; nullopt
    // otherwise (traversal, symlink escape, NUL byte, absent file, FIFO, device). `why`
    // receives a message fit for a 4xx reply, the same for a path outside the roots as for
    // an absent one.
    std::optional<std::filesystem::path> resolve(std::string_view requested,
                                                 std::string* why = nullptr) const;
    const std::vector<std::filesystem::path>& roots() const { return roots_; }

  private:
    std::vector<std::filesystem::path> roots_;
};

// [A-Za-z0-9][A-Za-z0-9._-]{0,63} and not "..": a name safe as a file name stem.
bool is_safe_name(std::string_view name);

}  // namespace quantlens::server
