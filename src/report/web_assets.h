// The web front end's files (web/report-template.html, web/app.html, web/src/*.js|css) and
// Plotly's minified bundle, embedded into the binary at build time so that `quantlens report`
// writes a self-contained file and `quantlens serve` needs nothing installed beside it.
//
// Embedding is done by the assembler (.incbin, web_assets_embed.cpp) from the paths the
// top-level CMakeLists.txt passes in; Plotly is embedded only when web/node_modules existed
// at configure time, otherwise it is looked up at run time (see plotly_js()).
// QUANTLENS_WEB_DIR=<repo>/web makes every lookup read the files from disk instead (UI
// development without rebuilding).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace quantlens::report {

// Content of a front-end file by its path under web/ ("src/report.js", "app.html"); throws
// Error naming the file when it is neither embedded nor found on disk.
std::string web_asset(std::string_view path);
// Paths of every embedded front-end file (Plotly excluded).
std::vector<std::string> web_asset_paths();

// Plotly's minified bundle: embedded, else $QUANTLENS_PLOTLY, else
// web/node_modules/plotly.js-dist-min/plotly.min.js under the source tree, the current
// directory or beside the executable. Throws Error saying how to install it.
const std::string& plotly_js();

// MIME type for a file name by extension (text/html, application/javascript, text/css, ...).
std::string_view mime_type(std::string_view path);

}  // namespace quantlens::report
