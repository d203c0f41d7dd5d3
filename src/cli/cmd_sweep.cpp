// `quantlens sweep MODEL --eval FILE`: the per-unit × per-type functional sensitivity sweep,
// as a resumable job in the store (see analysis/sweep/sweep.h for what is measured).
#include <fmt/format.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "analysis/sweep/placement.h"
#include "analysis/sweep/sweep.h"
#include "analysis/sweep/sweep_shard.h"
#include "analysis/write/gptq_rounding.h"
#include "cli/command.h"
#include "cli/memory_report.h"
#include "cli/sweep_mpi.h"
#include "core/error.h"
#include "core/gptq_format.h"
#include "core/output_file.h"
#include "jobs/runner.h"
#include "jobs/store.h"
#include "quant/quant.h"

namespace quantlens::cli {
namespace {

struct SweepArgs {
    std::string model, eval, types, granularity = "tensor", imatrix, store, json_out, gptq;
    int64_t tokens = 8192, ctx = 512, gptq_chunks = 64;
    bool gptq_act_order = false;
    double budget = 0;
    bool no_prefix_cache = false, no_uniform = false, bf16 = false, gpu = false,
         ggml_numerics = false;
    bool placement = false, granularity_given = false, force = false;
    bool experts = false;
    int64_t expert_sample = 0;
    bool rounding_choice = false;
    double rounding_margin = 0.05, rounding_share = 0.5;
    std::string base, placement_n;  // "" when not given
    int64_t job = 0;
    std::string shard;  // "i/n": measure every n-th item (analysis/sweep/sweep_shard.h)
    SweepMpiArgs mpi;
};

std::vector<int> parse_layer_counts(const std::string& list) {
    std::vector<int> out;
    for (const std::string& item : split_commas(list)) {
        size_t used = 0;
        int n = 0;
        try {
            n = std::stoi(item, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        QL_CHECK(!item.empty() && used == item.size(),
                 "--placement-n '{}': '{}' is not a layer count (expected e.g. 1,2,4)", list, item);
        out.push_back(n);
    }
    return out;
}

// --placement and its options → SweepOptions; the bad combinations are refused here, where
// the user's spelling of them is known.
void apply_placement_args(const SweepArgs& a, SweepOptions& o) {
    if (!a.placement) {
        QL_CHECK(a.base.empty() && a.placement_n.empty(),
                 "sweep: --base and --placement-n belong to --placement");
        return;
    }
    QL_CHECK(!a.granularity_given,
             "sweep: --placement and --granularity {} are alternatives (a placement study's "
             "units are its variants)",
             a.granularity);
    const std::string base = a.base.empty() ? "Q4_K" : a.base;
    const auto t = ggml_type_from_name(base);
    QL_CHECK(t.has_value(), "sweep: --base '{}' is not a quantization type (e.g. Q4_K, Q3_K)",
             base);
    o.granularity = "placement";
    o.base_type = *t;
    if (!a.placement_n.empty()) o.placement_n = parse_layer_counts(a.placement_n);
    if (a.types.empty()) {  // the default sweep types with more bits than the base
        o.types.clear();
        const double base_bits = ggml_type_bpw(*t);
        for (auto x : default_sweep_types())
            if (ggml_type_bpw(x) > base_bits) o.types.push_back(x);
        QL_CHECK(!o.types.empty(),
                 "sweep --placement: no default type is above --base {}; "
                 "name the raised types with --types",
                 base);
    }
}

int run_sweep_command(const SweepArgs& a, const std::string& command_line) {
    SweepMpiRun mpi(a.mpi);
    if (mpi.is_worker()) return mpi.run_worker();  // rank 0 alone touches the store
    QL_CHECK(a.shard.empty() || !mpi.active(),
             "sweep: --shard and --mpi are alternatives (--mpi schedules the items itself)");
    QL_CHECK(a.shard.empty() || a.job == 0,
             "sweep: --shard belongs to a new job; a shard job resumes with --job alone");
    if (!a.json_out.empty() && a.json_out != "-")
        check_output_path(a.json_out, overwrite_if(a.force));
    jobs::Store store(jobs::resolve_store_path(a.store));
    int64_t id = a.job;
    if (id == 0) {
        QL_CHECK(!a.model.empty() && !a.eval.empty(), "sweep: MODEL and --eval FILE are required");
        SweepOptions o;
        o.model = a.model;
        o.eval_text = a.eval;
        o.n_tokens = a.tokens;
        o.ctx = a.ctx;
        // "gptq" or GPTQ format names (gptq4g128, ...): a GPTQ-format sweep.
        if (a.types.rfind("gptq", 0) == 0 || a.types.rfind("GPTQ", 0) == 0) {
            o.types.clear();
            o.gptq_formats = parse_gptq_format_list(a.types);
            o.gptq_act_order = a.gptq_act_order;
        } else {
            QL_CHECK(!a.gptq_act_order, "sweep --gptq-act-order belongs to --types gptq");
            o.types = a.types.empty() ? default_sweep_types() : parse_type_list(a.types);
        }
        o.granularity = a.granularity;
        apply_placement_args(a, o);
        o.imatrix = a.imatrix;
        o.prefix_cache = !a.no_prefix_cache;
        o.uniform = !a.no_uniform;
        o.f16_weights = !a.bf16;
        o.ggml_numerics = a.ggml_numerics;
        o.budget_seconds = a.budget;
        o.gpu = a.gpu;
        o.gptq_text = a.gptq;
        o.gptq_chunks = a.gptq_chunks;
        o.experts = a.experts;
        o.expert_sample = a.expert_sample;
        o.rounding_choice = a.rounding_choice;
        o.rounding_margin = a.rounding_margin;
        o.rounding_share = a.rounding_share;
        QL_CHECK(!a.rounding_choice || (a.shard.empty() && !mpi.active()),
                 "sweep --rounding-choice: not with --shard or --mpi yet (the job decides once "
                 "which alternative roundings to evaluate)");
        id = a.shard.empty()
                 ? create_sweep_job(store, o, command_line)
                 : create_sweep_shard_job(store, o, parse_shard_spec(a.shard), command_line);
        fmt::print(stderr, "sweep: job {} in {}\n", id, store.path());
    } else {
        const jobs::Job job = store.get_job(id);
        if (job.state != jobs::JobState::queued) store.resume(id);
    }
    store.start(id);
    const jobs::JobState final_state = jobs::run_job(store, id, [&] { return mpi.run(store, id); });
    if (final_state != jobs::JobState::done) {
        fmt::print(stderr, "sweep: job {} is {}; continue with `quantlens jobs resume {}`\n", id,
                   jobs::state_name(final_state), id);
        return jobs::job_exit_code(final_state);
    }
    const auto shard = shard_of_params(store.get_job(id).params);
    if (!shard) fmt::print("{}", sweep_summary(store, id));  // a shard has only part of it
    fmt::print(stderr, "sweep: peak memory {}\n", peak_memory_text());
    const bool placement =
        SweepOptions::from_json(nlohmann::json::parse(store.get_job(id).params)).granularity ==
        "placement";
    if (!a.json_out.empty()) {
        nlohmann::json rows = nlohmann::json::array();
        for (const auto& m : store.measurements(id))
            rows.push_back(
                {{"unit", m.unit}, {"type", m.type}, {"metric", m.metric}, {"value", m.value}});
        nlohmann::json doc = {{"job", id}, {"measurements", rows}};
        if (placement) doc["placement"] = placement_json(store, id);
        const std::string text = doc.dump(1);
        if (a.json_out == "-")
            std::fwrite(text.data(), 1, text.size(), stdout);
        else
            write_output_file(a.json_out, text, overwrite_if(a.force));
    }
    if (shard) {
        fmt::print(
            "sweep: shard {}/{} done (job {} in {}). Next: quantlens jobs merge OUT.sqlite "
            "followed by every shard's store\n",
            shard->index, shard->count, id, store.path());
        return 0;
    }
    if (placement) {  // its units are presets, not tensors: nothing for plan to choose from
        fmt::print("sweep: job {} done (placement study).\n", id);
        return 0;
    }
    fmt::print("sweep: job {} done. Next: quantlens plan {} --target-bpw 4.5\n", id, id);
    return 0;
}

}  // namespace

void register_sweep_runner() {
    jobs::register_job_kind(
        jobs::JobKind::sweep, [](jobs::Store& store, int64_t id) { return run_sweep(store, id); },
        [](jobs::Store& store, int64_t id) { fmt::print("{}", sweep_summary(store, id)); });
}

QL_COMMAND(
    sweep, SweepArgs,
    "Per-tensor × per-type functional sensitivity (KLD, PPL, activation MSE) as a resumable job") {
    quantlens::cli::register_sweep_runner();
    cmd.add_option("MODEL", o->model, "HF directory or GGUF file");
    cmd.add_option("--eval", o->eval, "Evaluation text file");
    cmd.add_option("--tokens", o->tokens, "Evaluation tokens (whole chunks)")
        ->capture_default_str();
    cmd.add_option("--ctx", o->ctx, "Chunk length")->capture_default_str();
    cmd.add_option("--types", o->types,
                   "Comma-separated types (default Q8_0,Q6_K,Q5_K,Q4_K,Q3_K,Q2_K,IQ4_XS,IQ3_S); "
                   "'gptq' or gptq4g128,gptq8pca,...: GPTQ's own formats");
    cmd.add_option("--granularity", o->granularity, "tensor | layer | class")
        ->capture_default_str()
        ->each([o](const std::string&) { o->granularity_given = true; });
    cmd.add_flag("--placement", o->placement,
                 "Layer-placement study: base type everywhere but first/last/middle-N layers, "
                 "alternate layers, attention, FFN, output or embedding at each --types type");
    cmd.add_option("--base", o->base, "Placement: the type of every tensor not raised (Q4_K)");
    cmd.add_option("--placement-n", o->placement_n,
                   "Placement: comma-separated layer counts N (default 1, L/8, L/4)");
    cmd.add_option("--imatrix", o->imatrix, "Importance matrix (llama.cpp .dat or GGUF)");
    cmd.add_flag("--experts", o->experts,
                 "MoE: also measure each expert alone (its slices of the stacked ffn_*_exps) "
                 "with its share of routed tokens");
    cmd.add_option("--expert-sample", o->expert_sample,
                   "With --experts: measure this many experts per layer (a fixed sample)");
    cmd.add_option("--budget", o->budget,
                   "Seconds: measure by weight-proxy rank until the time is spent");
    cmd.add_flag("--no-prefix-cache", o->no_prefix_cache,
                 "Recompute every item from the embedding (timing reference)");
    cmd.add_flag("--no-uniform", o->no_uniform, "Skip the all-tensors-at-type items");
    cmd.add_flag("--bf16", o->bf16, "Keep the source weights instead of rounding through F16");
    cmd.add_flag("--ggml-numerics", o->ggml_numerics,
                 "Round matmul inputs as llama.cpp's CPU backend does for each type (what verify "
                 "measures); CPU only");
    cmd.add_flag("--gpu", o->gpu, "Evaluate on the GPU (CUDA build)");
    cmd.add_option("--gptq", o->gptq,
                   "Calibration text: round with GPTQ against its input Hessians, as "
                   "`quantize --gptq` writes (types GPTQ does not cover are rounded plainly)");
    cmd.add_option("--gptq-chunks", o->gptq_chunks, kGptqChunksHelp)->capture_default_str();
    cmd.add_flag("--rounding-choice", o->rounding_choice,
                 "Rounding per tensor as a choice for plan: bare types at the base rounding "
                 "(imatrix with --imatrix, else plain), and plain / GPTQ (--gptq) where the "
                 "weight proxy says they can win");
    cmd.add_option("--rounding-margin", o->rounding_margin,
                   "With --rounding-choice: evaluate an alternative whose proxy is below "
                   "(1 + this) × the base rounding's")
        ->capture_default_str();
    cmd.add_option("--rounding-share", o->rounding_share,
                   "With --rounding-choice: evaluate at most this share of the base items' "
                   "count of alternatives, the most promising first")
        ->capture_default_str();
    cmd.add_flag("--gptq-act-order", o->gptq_act_order,
                 "With --types gptq and --gptq: GPTQ in act order (desc_act)");
    cmd.add_option("--job", o->job, "Resume this sweep job instead of starting one");
    cmd.add_option("--shard", o->shard,
                   "i/n: measure only items i, i+n, i+2n, … into this store; combine the "
                   "shard stores with `quantlens jobs merge`");
    quantlens::cli::add_sweep_mpi_options(cmd, o->mpi);
    add_store_option(cmd, o->store);
    cmd.add_option("--json", o->json_out,
                   "Write all measurements as JSON to this file ('-' = stdout)");
    cmd.add_flag("--force,-f", o->force, "Overwrite an existing --json file");
    return [o] { return quantlens::cli::run_sweep_command(*o, quantlens::cli::invocation_line()); };
}

}  // namespace quantlens::cli
