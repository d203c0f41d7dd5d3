// Fills the report template's markers (/*QL:STYLE*/, /*QL:DATA*/, /*QL:PLOTLY*/,
// /*QL:REPORT_JS*/) in one pass over the template, so inlined content is never re-scanned
// for markers.
#include "report/report_html.h"

#include <array>
#include <string_view>
#include <utility>

#include "core/error.h"
#include "report/web_assets.h"

namespace quantlens::report {

std::string json_for_script(const nlohmann::json& value) {
    // U+2028/U+2029 are valid in JSON but end lines in older JS engines; ensure_ascii-free
    // dump keeps UTF-8, so escape only what can break out of the <script> element.
    const std::string text = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    std::string out;
    out.reserve(text.size() + 16);
    for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '<' && i + 1 < text.size() && (text[i + 1] == '/' || text[i + 1] == '!'))
            out += "\\u003c";
        else
            out += text[i];
    }
    return out;
}

std::string render_report_html(const nlohmann::json& report_data) {
    const std::string tmpl = web_asset("report-template.html");
    const std::string style = web_asset("src/style.css");
    const std::string script = web_asset("src/report.js");
    const std::string data = json_for_script(report_data);
    const std::string& plotly = plotly_js();
    // Inlined scripts must not close their own <script> element.
    QL_ASSERT(script.find("</script") == std::string::npos);
    QL_CHECK(plotly.find("</script") == std::string::npos,
             "plotly.min.js contains '</script' and cannot be inlined into the report");
    const std::array<std::pair<std::string_view, const std::string*>, 4> markers = {{
        {"/*QL:STYLE*/", &style},
        {"/*QL:DATA*/", &data},
        {"/*QL:PLOTLY*/", &plotly},
        {"/*QL:REPORT_JS*/", &script},
    }};
    std::string out;
    out.reserve(tmpl.size() + style.size() + data.size() + plotly.size() + script.size());
    size_t pos = 0;
    for (;;) {
        size_t best = std::string::npos;
        const std::pair<std::string_view, const std::string*>* which = nullptr;
        for (const auto& m : markers) {
            const size_t at = tmpl.find(m.first, pos);
            if (at < best) {
                best = at;
                which = &m;
            }
        }
        if (!which) break;
        out.append(tmpl, pos, best - pos);
        out += *which->second;
        pos = best + which->first.size();
    }
    out.append(tmpl, pos, std::string::npos);
    return out;
}

}  // namespace quantlens::report
