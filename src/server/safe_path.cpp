#include "server/safe_path.h"

#include "core/error.h"

namespace quantlens::server {

namespace fs = std::filesystem;

PathPolicy::PathPolicy(std::vector<std::string> roots) {
    for (const auto& r : roots) {
        std::error_code ec;
        fs::path canon = fs::canonical(r, ec);
        QL_CHECK(!ec && fs::is_directory(canon), "allowed root '{}' is not an existing directory",
                 r);
        roots_.push_back(std::move(canon));
    }
    QL_CHECK(!roots_.empty(), "no allowed root directory for model paths");
}

namespace {
bool inside(const fs::path& path, const fs::path& root) {
    auto p = path.begin();
    for (auto r = root.begin(); r != root.end(); ++r, ++p)
        if (p == path.end() || *p != *r) return false;
    return true;
}
}  // namespace

std::optional<fs::path> PathPolicy::resolve(std::string_view requested, std::string* why) const {
    auto reject = [&](const std::string& message) -> std::optional<fs::path> {
        if (why) *why = message;
        return std::nullopt;
    };
    if (requested.find('\0') != std::string_view::npos) return reject("path contains a NUL byte");
    if (requested.size() > 4096) return reject("path longer than 4096 bytes");
    fs::path p = requested.empty() ? roots_.front() : fs::path(std::string(requested));
    if (p.is_relative()) p = roots_.front() / p;
    std::error_code ec;
    // One answer for absent and outside: a different one would tell a client which files
    // exist outside the roots.
    const std::string absent =
        "no such file or directory inside the allowed directories: " + std::string(requested);
    // canonical() follows every symlink, so a link pointing outside a root is caught too.
    fs::path canon = fs::canonical(p, ec);
    if (ec) return reject(absent);
    bool allowed = false;
    for (const auto& root : roots_) allowed = allowed || inside(canon, root);
    if (!allowed) return reject(absent);
    // Opening a FIFO blocks (a server thread, forever) and a device never ends; only
    // directories and regular files are served or passed to jobs.
    const auto type = fs::status(canon, ec).type();
    if (ec || (type != fs::file_type::directory && type != fs::file_type::regular))
        return reject("not a regular file or directory: " + std::string(requested));
    return canon;
}

bool is_safe_name(std::string_view name) {
    if (name.empty() || name.size() > 64 || name == "." || name == "..") return false;
    auto alnum = [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    };
    if (!alnum(name[0])) return false;
    for (char c : name)
        if (!alnum(c) && c != '.' && c != '_' && c != '-') return false;
    return name.find("..") == std::string_view::npos;
}

}  // namespace quantlens::server
