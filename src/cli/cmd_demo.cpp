// `quantlens demo`: the whole pipeline on the bundled model (examples/models/llama-8m).
// It grows with the product: inspect → weight-error → eval → sweep → plan → quantize →
// verify → report.
#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>

#include "cli/command.h"
#include "core/error.h"

namespace quantlens::cli {
namespace {

std::string find_demo_model() {
    for (const char* candidate :
         {"examples/models/llama-8m", QL_SOURCE_DIR "/examples/models/llama-8m"}) {
        if (std::filesystem::exists(std::string(candidate) + "/config.json")) return candidate;
    }
    fail("demo: bundled model examples/models/llama-8m not found (run from the repository root)");
}

}  // namespace
}  // namespace quantlens::cli

QL_COMMAND(demo, "Run the pipeline on the bundled llama-8m model") {
    return [] {
        const std::string model = quantlens::cli::find_demo_model();
        fmt::print("quantlens demo on {}\n", model);
        return 0;
    };
}
