// `quantlens compare FP QUANT --text FILE [--ctx 512] [--chunks N] [--json] [--store S]`:
// where an existing quantized GGUF hurts, against the model it came from: per-tensor weight
// error, per-layer activation drift, KLD statistics and ΔPPL, and the KLD each layer is
// responsible for (measured by putting it back to full precision). A resumable job.
#include <fmt/format.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "analysis/studies/compare.h"
#include "cli/command.h"
#include "cli/memory_report.h"
#include "core/error.h"
#include "core/peak_memory.h"
#include "jobs/runner.h"
#include "jobs/store.h"

namespace quantlens::cli {
namespace {

struct CompareArgs {
    CompareOptions o;
    std::string store;
    size_t top = 5;
    bool json = false;
};

int finish_compare(jobs::Store& store, int64_t id, jobs::JobState state, const CompareArgs& a) {
    if (state != jobs::JobState::done) {
        fmt::print(stderr, "compare: job {} is {}; continue with `quantlens jobs resume {}`\n", id,
                   jobs::state_name(state), id);
        return jobs::job_exit_code(state);
    }
    const CompareResult r = load_compare_result(store, id);
    if (a.json)
        fmt::print("{}\n", compare_to_json(r, a.top).dump(2));
    else
        fmt::print("{}", compare_table(r, a.top));
    return 0;
}

int run_compare_command(const CompareArgs& a, const std::string& command_line) {
    jobs::Store store(jobs::resolve_store_path(a.store));
    const int64_t id = create_compare_job(store, a.o, command_line);
    fmt::print(stderr, "compare: job {} in {}\n", id, store.path());
    store.start(id);
    const jobs::JobState s = jobs::run_job(store, id, [&] { return run_compare_job(store, id); });
    const int rc = finish_compare(store, id, s, a);
    fmt::print(stderr, "compare: peak memory {}\n", peak_memory_text());
    return rc;
}

}  // namespace

QL_COMMAND(compare, CompareArgs, "Where a quantized GGUF differs from its full-precision model") {
    using namespace quantlens;
    jobs::register_job_runner(jobs::JobKind::compare, [](jobs::Store& store, int64_t id) {
        const jobs::JobState s =
            jobs::run_job(store, id, [&] { return run_compare_job(store, id); });
        return cli::finish_compare(store, id, s, {});
    });
    cmd.add_option("FP", o->o.fp, "Hugging Face directory or F16/BF16/F32 GGUF")->required();
    cmd.add_option("QUANT", o->o.quant, "Quantized GGUF (any mix of types)")->required();
    cmd.add_option("--text", o->o.text, "Evaluation text (UTF-8)")->required();
    cmd.add_option("--ctx", o->o.ctx, "Context (chunk) length")->capture_default_str();
    cmd.add_option("--chunks", o->o.chunks, "Number of chunks (default: all)");
    cmd.add_option("--batch", o->o.batch, "Chunks per forward pass")->capture_default_str();
    cmd.add_option("--top", o->top, "How many tensors to name as the largest weight error")
        ->capture_default_str();
    cmd.add_flag("!--exact-fp", o->o.f16_base,
                 "Keep HF weights as stored (default: rounded to F16 like llama.cpp's F16 base)");
    cmd.add_flag("!--no-ggml-numerics", o->o.ggml_numerics,
                 "Plain f32 activations (default: llama.cpp's CPU rounding, to match its KLD)");
    cmd.add_flag("!--no-attribution", o->o.attribution,
                 "Skip the per-layer swap-back measurements (one model pass per layer)");
    cmd.add_flag("--gpu", o->o.gpu,
                 "Run both models on the GPU (CUDA build; F32 with llama.cpp's numerics, F16 with "
                 "--no-ggml-numerics)");
    cmd.add_flag("--json", o->json, "Print one JSON object");
    add_store_option(cmd, o->store);
    return
        [o] { return quantlens::cli::run_compare_command(*o, quantlens::cli::invocation_line()); };
}

}  // namespace quantlens::cli
