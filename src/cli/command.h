// Subcommand registry. Each command lives in its own src/cli/cmd_<name>.cpp and registers
// itself with QL_COMMAND; main() builds the CLI11 app from the registry, so adding a
// command never edits a shared file.
//
//   QL_COMMAND(inspect, "Tensor table of a model") {
//       auto opts = std::make_shared<InspectOptions>();
//       cmd.add_option("MODEL", opts->model)->required();
//       return [opts] { return run_inspect(*opts); };   // returns the exit code
//   }
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace quantlens::cli {

using CommandRunner = std::function<int()>;
using CommandSetup = std::function<CommandRunner(CLI::App& cmd)>;

struct CommandSpec {
    std::string name;
    std::string description;
    CommandSetup setup;
};

std::vector<CommandSpec>& command_registry();

// "quantlens ARGS..." as this process was started, each argument quoted for a POSIX shell
// where needed: what a job records as the command that made it (`jobs show`), so rerunning
// it repeats every option given.
std::string invocation_line();
void set_invocation(int argc, char** argv);  // main() only

struct CommandRegistrar {
    CommandRegistrar(std::string name, std::string description, CommandSetup setup) {
        command_registry().push_back({std::move(name), std::move(description), std::move(setup)});
    }
};

}  // namespace quantlens::cli

#define QL_COMMAND_CONCAT2(a, b) a##b
#define QL_COMMAND_CONCAT(a, b) QL_COMMAND_CONCAT2(a, b)
#define QL_COMMAND(name, description)                                                          \
    static ::quantlens::cli::CommandRunner QL_COMMAND_CONCAT(ql_setup_, name)(CLI::App & cmd); \
    static ::quantlens::cli::CommandRegistrar QL_COMMAND_CONCAT(ql_registrar_, name)(          \
        #name, description, &QL_COMMAND_CONCAT(ql_setup_, name));                              \
    static ::quantlens::cli::CommandRunner QL_COMMAND_CONCAT(ql_setup_, name)(CLI::App & cmd)
