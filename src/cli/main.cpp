// quantlens CLI entry point: builds subcommands from the registry (command.h), turns
// quantlens::Error into one clear line and exit code 1, internal errors into exit code 2.
#include <cstdio>
#include <exception>
#include <map>

#include "cli/command.h"
#include "core/allocator.h"
#include "core/error.h"
#include "core/output_file.h"
#include "core/parallel.h"
#include "core/progress.h"

namespace quantlens::cli {
std::vector<CommandSpec>& command_registry() {
    static std::vector<CommandSpec> registry;
    return registry;
}
}  // namespace quantlens::cli

int main(int argc, char** argv) {
    using namespace quantlens;
    keep_large_buffers_in_heap();
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
