// quantlens CLI entry point: builds subcommands from the registry (command.h), turns
// quantlens::Error into one clear line and exit code 1, internal errors into exit code 2.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <map>

#include <fmt/format.h>

#include "cli/command.h"
#include "core/allocator.h"
#include "core/error.h"
#include "core/output_file.h"
#include "core/parallel.h"
#include "core/progress.h"
#include "jobs/job_options.h"

namespace quantlens::cli {
std::vector<CommandSpec>& command_registry() {
    static std::vector<CommandSpec> registry;
    return registry;
}

namespace {
std::vector<std::string>& invocation_args() {
    static std::vector<std::string> args;
    return args;
}

std::string shell_quote(const std::string& arg) {
    if (!arg.empty() && arg.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                              "0123456789_-.,/:=+@%") == std::string::npos)
        return arg;
    std::string out = "'";
    for (char c : arg) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
}
}  // namespace

void set_invocation(int argc, char** argv) {
    invocation_args().assign(argv + 1, argv + argc);
}

std::vector<std::string> split_commas(const std::string& list) {
    std::vector<std::string> items;
    size_t pos = 0;
    while (pos <= list.size()) {
        const size_t comma = std::min(list.find(',', pos), list.size());
        items.push_back(list.substr(pos, comma - pos));
        pos = comma + 1;
    }
    return items;
}

CLI::Option* add_store_option(CLI::App& cmd, std::string& store, const std::string& use) {
    return cmd.add_option("--store", store,
                          fmt::format("Job store{}{} (default: $QUANTLENS_STORE or "
                                      "~/.cache/quantlens/jobs.sqlite)",
                                      use.empty() ? "" : " ", use));
}

std::string invocation_line() {
    std::string line = "quantlens";
    for (const auto& a : invocation_args()) line += " " + shell_quote(a);
    return line;
}

namespace {
// The web server accepts a command's options from jobs::job_kind_specs(); an option
// declared here but not there (or the reverse, or a flag there that takes a value here)
// would make the app offer what the command refuses, so it stops every run at once.
void check_job_options(const CLI::App& cmd, const jobs::JobKindSpec& spec) {
    std::vector<std::string> seen;
    for (const CLI::Option* opt : cmd.get_options()) {
        if (opt == cmd.get_help_ptr() || !opt->nonpositional()) continue;
        const auto& names = opt->get_lnames();
        if (names.empty()) continue;
        const std::string& name = names.front();
        const jobs::JobOption* o = spec.find(name);
        if (!o)
            throw InternalError(
                fmt::format("internal error: {} --{} is missing from jobs::job_kind_specs() "
                            "(src/jobs/job_options.cpp): add it, marked web or CLI only",
                            spec.kind, name));
        const bool flag = opt->get_expected_max() == 0;
        if (flag != (o->value == jobs::OptionValue::flag))
            throw InternalError(fmt::format(
                "internal error: {} --{}: job_kind_specs() says {}, the command {}", spec.kind,
                name, jobs::option_value_name(o->value), flag ? "a flag" : "takes a value"));
        seen.push_back(name);
    }
    for (const auto& o : spec.options)
        if (std::find(seen.begin(), seen.end(), o.name) == seen.end())
            throw InternalError(
                fmt::format("internal error: jobs::job_kind_specs() lists {} --{}, which the "
                            "command does not define",
                            spec.kind, o.name));
}
}  // namespace
}  // namespace quantlens::cli

int main(int argc, char** argv) {
    using namespace quantlens;
    keep_large_buffers_in_heap();
    cli::set_invocation(argc, argv);
    // Ctrl-C or a kill while a file is being written leaves no temporary behind.
    install_output_signal_cleanup();
    CLI::App app{
        "quantlens: which tensors break under which quantization type, and the best "
        "mixed-precision recipe for a size budget"};
    app.set_version_flag("--version", QL_VERSION);
    app.require_subcommand(1);
    int threads = 0;
    bool quiet = false;
    app.add_option("--threads,-t", threads, "CPU threads (default: all cores)");
    app.add_flag("--quiet,-q", quiet, "No progress bars");

    auto& registry = cli::command_registry();
    std::sort(registry.begin(), registry.end(),
              [](const auto& a, const auto& b) { return a.name < b.name; });
    std::map<CLI::App*, cli::CommandRunner> runners;
    for (auto& spec : registry) {
        CLI::App* sub = app.add_subcommand(spec.name, spec.description);
        runners[sub] = spec.setup(*sub);
    }
    try {
        for (auto& [sub, run] : runners)
            if (const auto* kind = jobs::find_job_kind_spec(sub->get_name()))
                cli::check_job_options(*sub, *kind);
    } catch (const InternalError& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 2;
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    if (threads > 0) set_num_threads(threads);
    if (quiet) Progress::set_enabled(false);
    try {
        for (auto& [sub, run] : runners)
            if (sub->parsed()) return run();
    } catch (const Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    } catch (const InternalError& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}
