// Subcommand registry. Each command lives in its own src/cli/cmd_<name>.cpp and registers
// itself with QL_COMMAND; main() builds the CLI11 app from the registry, so adding a
// command never edits a shared file.
//
//   namespace quantlens::cli {
//   QL_COMMAND(inspect, InspectOptions, "Tensor table of a model") {
//       cmd.add_option("MODEL", o->model)->required();   // o: std::shared_ptr<InspectOptions>
//       return [o] { return run_inspect(*o); };          // returns the exit code
//   }
//   }  // namespace quantlens::cli
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
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

// The comma-separated items of an option's value ("1,2,4" → "1", "2", "4"); an empty item
// stays, for the caller to refuse by name.
std::vector<std::string> split_commas(const std::string& list);

// --store PATH, worded one way in every command that opens the job store: `use` (may be
// empty) says what the command keeps or reads there. An empty PATH means the default store
// (jobs::resolve_store_path).
CLI::Option* add_store_option(CLI::App& cmd, std::string& store, const std::string& use = "");

struct CommandRegistrar {
    CommandRegistrar(std::string name, std::string description, CommandSetup setup) {
        command_registry().push_back({std::move(name), std::move(description), std::move(setup)});
    }
};

}  // namespace quantlens::cli

#define QL_COMMAND_CONCAT2(a, b) a##b
#define QL_COMMAND_CONCAT(a, b) QL_COMMAND_CONCAT2(a, b)
// The command's setup: `cmd` is its CLI11 app, `o` a fresh std::shared_ptr<Options> its
// options fill and the runner it returns keeps.
#define QL_COMMAND(name, Options, description)                                           \
    static ::quantlens::cli::CommandRunner QL_COMMAND_CONCAT(ql_setup_, name)(           \
        CLI::App & cmd, const std::shared_ptr<Options>& o);                              \
    static ::quantlens::cli::CommandRegistrar QL_COMMAND_CONCAT(ql_registrar_, name)(    \
        #name, description, [](CLI::App& cmd) {                                          \
            return QL_COMMAND_CONCAT(ql_setup_, name)(cmd, std::make_shared<Options>()); \
        });                                                                              \
    static ::quantlens::cli::CommandRunner QL_COMMAND_CONCAT(ql_setup_, name)(           \
        CLI::App & cmd, const std::shared_ptr<Options>& o)
