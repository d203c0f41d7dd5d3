// The options of each command that can run as a job from the web app, in one table: the CLI
// checks at startup that its CLI11 definitions of sweep, calibrate, plan, quantize, verify,
// eval, compare and audit match it (src/cli/main.cpp), and the server builds a child's argv only
// from the entries marked `web` (src/server/server_jobs.cpp) and lists them for the app's start
// form (GET /api/job-kinds). An option added to a command without an entry here stops the CLI at
// startup, so the three can no longer drift apart.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <string_view>
#include <vector>

namespace quantlens::jobs {

// How a web-supplied value is checked before it becomes `--name value` on the child's argv.
enum class OptionValue {
    path,      // an existing file or directory inside the server's allowed roots
    out_path,  // a file name in an existing allowed directory
    number,    // a non-negative number
    word,      // letters, digits, '.', '_', '-', ':'
    words,     // comma-separated words ("1,2,4", "Q4_K_M,Q8_0")
    types,     // comma-separated ggml type names
    flag,      // true/false; no value on the command line
};

struct JobOption {
    std::string_view name;  // long name without "--"
    OptionValue value;
    bool web;  // false: CLI only (stores, machine-readable output, distributed modes, ...)
};

struct JobKindSpec {
    std::string_view kind;
    // How the request's "model" / "job" reach the command: nullptr = not accepted, "" = as
    // the positional argument, "--x" = as that option (verify's model is its --base).
    const char* model_arg;
    const char* job_arg;
    bool model_required, job_required;
    std::vector<JobOption> options;
    // What the request's "model" is, as the app labels it: "model", or "zoo" for audit (a
    // zoo file naming the models).
    std::string_view model_label = "model";
    // A second positional path after the model, from the request field of this name
    // (compare's QUANT: "quant"); nullptr = none.
    const char* second_path = nullptr;

    const JobOption* find(std::string_view name) const;
    // The command records itself in a job store given with --store.
    bool takes_store() const { return find("store") != nullptr; }
};

const std::vector<JobKindSpec>& job_kind_specs();
const JobKindSpec* find_job_kind_spec(std::string_view kind);
std::string_view option_value_name(OptionValue value);
// The web options of every kind, for the app's start form:
// {"sweep": {"target": "model", "options": {"eval": "path", ...}}, ...}; compare also has
// "second": "quant", audit "model_label": "zoo".
nlohmann::json job_kinds_json();

}  // namespace quantlens::jobs
