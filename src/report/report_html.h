// The self-contained report: web/report-template.html with Plotly, the stylesheet, the page
// script (web/src/report.js) and the report-data JSON inlined, so the file opens offline,
// from a mail attachment or an archive, and makes no network request.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace quantlens::report {

// Throws Error when Plotly or a template file is missing (see web_assets.h).
std::string render_report_html(const nlohmann::json& report_data);

// JSON text that is safe inside <script>: "</" and "<!--" cannot end or open anything.
std::string json_for_script(const nlohmann::json& value);

}  // namespace quantlens::report
