// Lookup of the embedded front-end files, with the on-disk overrides and Plotly's run-time
// fallback described in web_assets.h.
#include "report/web_assets.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>

#include "core/error.h"
#include "report/web_assets_embed.h"

namespace quantlens::report {
namespace {

namespace fs = std::filesystem;

std::optional<std::string> read_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return std::nullopt;
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

std::optional<std::string_view> embedded(std::string_view path) {
    for (const auto& file : detail::embedded_files())
        if (file.path == path) return file.content;
    return std::nullopt;
}

const char* kPlotlyRelative = "web/node_modules/plotly.js-dist-min/plotly.min.js";

}  // namespace

std::string web_asset(std::string_view path) {
    if (const char* dir = std::getenv("QUANTLENS_WEB_DIR"); dir && *dir) {
        if (auto text = read_file(fs::path(dir) / path)) return *text;
    }
    if (auto blob = embedded(path)) return std::string(*blob);
#ifdef QL_SOURCE_DIR
    if (auto text = read_file(fs::path(QL_SOURCE_DIR) / "web" / path)) return *text;
#endif
    fail(
        "web asset '{}' is not embedded in this build and was not found under web/ "
        "(rebuild quantlens from the repository)",
        path);
}

std::vector<std::string> web_asset_paths() {
    std::vector<std::string> paths;
    for (const auto& file : detail::embedded_files())
        if (file.path != "plotly.min.js") paths.emplace_back(file.path);
    return paths;
}

const std::string& plotly_js() {
    static std::once_flag once;
    static std::string content;
    std::call_once(once, [] {
        if (auto blob = embedded("plotly.min.js")) {
            content = std::string(*blob);
            return;
        }
        std::vector<fs::path> candidates;
        if (const char* env = std::getenv("QUANTLENS_PLOTLY"); env && *env)
            candidates.emplace_back(env);
#ifdef QL_SOURCE_DIR
        candidates.push_back(fs::path(QL_SOURCE_DIR) / kPlotlyRelative);
#endif
        candidates.push_back(fs::current_path() / kPlotlyRelative);
        std::error_code ec;
        const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
        if (!ec) candidates.push_back(exe.parent_path().parent_path() / kPlotlyRelative);
        for (const auto& path : candidates)
            if (auto text = read_file(path); text && !text->empty()) {
                content = std::move(*text);
                return;
            }
    });
    QL_CHECK(!content.empty(),
             "Plotly is not embedded in this build and {} was not found: run `npm ci` in web/ "
             "(or ./scripts/setup.sh) and rebuild, or set QUANTLENS_PLOTLY=/path/to/plotly.min.js",
             kPlotlyRelative);
    return content;
}

std::string_view mime_type(std::string_view path) {
    auto ends = [&](std::string_view ext) {
        return path.size() >= ext.size() && path.substr(path.size() - ext.size()) == ext;
    };
    if (ends(".html")) return "text/html; charset=utf-8";
    if (ends(".js")) return "application/javascript; charset=utf-8";
    if (ends(".css")) return "text/css; charset=utf-8";
    if (ends(".json")) return "application/json";
    if (ends(".svg")) return "image/svg+xml";
    if (ends(".png")) return "image/png";
    return "application/octet-stream";
}

}  // namespace quantlens::report
