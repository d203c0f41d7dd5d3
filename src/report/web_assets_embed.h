// Internal to src/report: the table of files web_assets_embed.cpp embedded.
#pragma once

#include <string_view>
#include <vector>

namespace quantlens::report::detail {

struct EmbeddedFile {
    std::string_view path;  // under web/ ("src/report.js"); "plotly.min.js" for Plotly
    std::string_view content;
};

const std::vector<EmbeddedFile>& embedded_files();

}  // namespace quantlens::report::detail
