// Embeds web/ files into the binary with the assembler's .incbin, which copies the bytes
// verbatim (no 4.5 MB hex array for the compiler to parse). QL_WEB_DIR and QL_PLOTLY_PATH are
// set by the top-level CMakeLists.txt, which also makes this object depend on those files.
// Each blob is followed by a NUL so it can be read as a C string if needed.
#include "report/web_assets_embed.h"

#ifdef QL_WEB_DIR
#define QL_INCBIN(sym, file)                                                                  \
    __asm__(".pushsection .rodata.ql_web,\"a\",@progbits\n.balign 16\n.globl " #sym "\n" #sym \
            ":\n.incbin \"" file "\"\n.globl " #sym "_end\n" #sym                             \
            "_end:\n.byte 0\n.popsection\n");                                                 \
    extern "C" const char sym[];                                                              \
    extern "C" const char sym##_end[];

QL_INCBIN(ql_web_report_template, QL_WEB_DIR "/report-template.html")
QL_INCBIN(ql_web_app_html, QL_WEB_DIR "/app.html")
QL_INCBIN(ql_web_style_css, QL_WEB_DIR "/src/style.css")
QL_INCBIN(ql_web_report_js, QL_WEB_DIR "/src/report.js")
QL_INCBIN(ql_web_app_js, QL_WEB_DIR "/src/app.js")
QL_INCBIN(ql_web_recipe_js, QL_WEB_DIR "/src/recipe.js")
#ifdef QL_PLOTLY_PATH
QL_INCBIN(ql_web_plotly, QL_PLOTLY_PATH)
#endif
#endif

namespace quantlens::report::detail {

#ifdef QL_WEB_DIR
#define QL_BLOB(path, sym) \
    { path, std::string_view(sym, static_cast<size_t>(sym##_end - sym)) }
const std::vector<EmbeddedFile>& embedded_files() {
    static const std::vector<EmbeddedFile> files = {
        QL_BLOB("report-template.html", ql_web_report_template),
        QL_BLOB("app.html", ql_web_app_html),
        QL_BLOB("src/style.css", ql_web_style_css),
        QL_BLOB("src/report.js", ql_web_report_js),
        QL_BLOB("src/app.js", ql_web_app_js),
        QL_BLOB("src/recipe.js", ql_web_recipe_js),
#ifdef QL_PLOTLY_PATH
        QL_BLOB("plotly.min.js", ql_web_plotly),
#endif
    };
    return files;
}
#else
const std::vector<EmbeddedFile>& embedded_files() {
    static const std::vector<EmbeddedFile> none;
    return none;
}
#endif

}  // namespace quantlens::report::detail
