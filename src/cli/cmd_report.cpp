// `quantlens report JOB [-o report.html] [--force] [--store S] [--json]`: the self-contained HTML
// report of a job (or, with --json, the report-data document the page draws).
#include <filesystem>
#include <memory>

#include <fmt/format.h>

#include "cli/command.h"
#include "core/error.h"
#include "core/output_file.h"
#include "jobs/store.h"
#include "report/report_data.h"
#include "report/report_html.h"

namespace quantlens::cli {
namespace {

struct ReportOptions {
    int64_t job = 0;
    std::string output;
    std::string store;
    bool json = false;
    bool force = false;
};

int run_report(const ReportOptions& opts) {
    jobs::Store store(jobs::resolve_store_path(opts.store));
    const nlohmann::json data = report::build_report_data(store, opts.job);
    const std::string output =
        opts.output.empty() ? fmt::format("report-job{}.{}", opts.job, opts.json ? "json" : "html")
                            : opts.output;
    check_output_path(output, overwrite_if(opts.force));
    const std::string text = opts.json ? data.dump(1) : report::render_report_html(data);
    write_output_file(output, text, overwrite_if(opts.force));
    fmt::print("wrote {} ({:.1f} MB): job {}, {} units × {} types, {} cells\n", output,
               static_cast<double>(text.size()) / 1e6, opts.job, data["units"].size(),
               data["types"].size(), data["cells"].size());
    if (!opts.json)
        fmt::print("open it in a browser: file://{}\n",
                   std::filesystem::absolute(output).lexically_normal().string());
    return 0;
}

}  // namespace

QL_COMMAND(report, ReportOptions, "Write a job's self-contained interactive HTML report") {
    cmd.add_option("JOB", o->job, "Job id")->required()->check(CLI::PositiveNumber);
    cmd.add_option("-o,--output", o->output, "Output file (default report-job<ID>.html)");
    add_store_option(cmd, o->store);
    cmd.add_flag("--json", o->json, "Write the report-data JSON instead of HTML");
    cmd.add_flag("--force,-f", o->force, "Overwrite an existing output");
    return [o] { return quantlens::cli::run_report(*o); };
}

}  // namespace quantlens::cli
