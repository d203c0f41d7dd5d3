// `quantlens plan JOB (--target-bpw X | --target-size S | --knee)`: one type per tensor from
// a sweep's measurements (analysis/plan/plan_job.h), saved as a recipe with exports for
// llama.cpp and GPTQModel, and stored in the job for the report.
#include <fmt/format.h>

#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "analysis/plan/gptq_plan.h"
#include "analysis/plan/plan_job.h"
#include "analysis/studies/interactions.h"
#include "analysis/studies/refine.h"
#include "cli/command.h"
#include "core/error.h"
#include "core/ggml_type.h"
#include "core/gptq_format.h"
#include "core/output_file.h"
#include "formats/gptq_config.h"
#include "jobs/store.h"
#include "model/model.h"
#include "quant/quant.h"

namespace quantlens::cli {
namespace {

struct PlanArgs {
    int64_t job = 0;
    std::string target_size, types, min_type, max_type, metric = "kld", objective = "mean", store,
                                                        output, name;
    std::string export_llama, export_gptq, frontier_out, format = "ggml";
    double target_bpw = 0;
    int64_t interactions = 0;         // pairs to measure for the pairwise correction (0: off)
    int64_t interactions_tokens = 0;  // tokens of the sweep's text for the mix (0: the sweep's)
    int64_t refine = 0;               // rounds of refinement by measured mixes (0: off)
    int64_t refine_tokens = 0;        // tokens of the sweep's text for those mixes (0: the sweep's)
    bool knee = false, json = false, force = false, no_rounding_choice = false;
    std::vector<std::string> pins;
    std::vector<std::string> ties;
};

// (GGUF name, HF name) of every tensor of the recipe's model, for the GPTQ export.
std::vector<std::pair<std::string, std::string>> model_tensor_names(const Recipe& r) {
    auto model = Model::open(r.model);
    std::vector<std::pair<std::string, std::string>> names;
    for (const auto& t : model->tensors()) names.push_back({t.name, t.hf_name});
    return names;
}

// plan --format gptq (analysis/plan/gptq_plan.h): a GPTQ recipe and its quantization_config.
// The frontier as --frontier writes it and the stored plan artifact holds it: the objective's
// prediction at each size ("predicted_kld", or "predicted_kld_p99" for --objective p99).
nlohmann::json frontier_json(const std::vector<FrontierPoint>& points, int64_t n_params,
                             const std::string& objective = "mean") {
    const char* key = objective == "p99" ? "predicted_kld_p99" : "predicted_kld";
    nlohmann::json out = nlohmann::json::array();
    for (const auto& p : points)
        out.push_back(
            {{"size_bytes", p.bytes},
             {"bpw", bits_per_weight(static_cast<double>(p.bytes), static_cast<double>(n_params))},
             {key, p.error}});
    return out;
}

// A prediction that may be unknown (no tails in the sweep): null in JSON, "-" in text.
nlohmann::json number_or_null(double v) {
    return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}
std::string number_or_dash(double v) {
    return std::isfinite(v) ? fmt::format("{:.5f}", v) : "-";
}

// plan --refine N (both formats): the refined choice's recipe predicts the refined mix as
// measured.
void take_refined_mix(Recipe& r, const RefineOutcome& refined, int64_t rounds) {
    r.predicted_kld = refined.result.kld_mean;
    r.predicted_kld_p99 = refined.result.kld_p99;
    r.predicted_kld_p999 = refined.result.kld_p999;
    std::erase_if(r.notes, [](const std::string& n) {
        return n.find("× interaction factor") != std::string::npos;
    });
    r.notes.push_back(fmt::format(
        "refined by measured mixes (plan --refine {}): the mix's KLD over {} tokens of the "
        "sweep's text {:.6f} → {:.6f}; predicted KLD = the refined mix measured there",
        rounds, refined.tokens, refined.search.start_kld, refined.result.kld_mean));
}

// plan --refine N: the plan (plan_from_job or plan_gptq_from_job) refined and made again with
// the refined choice; nullopt without --refine.
template <typename Request, typename Outcome>
std::optional<RefineOutcome> refine_if_asked(const PlanArgs& a, jobs::Store& store, Request& req,
                                             Outcome& out,
                                             Outcome (*plan)(jobs::Store&, const Request&)) {
    if (a.refine == 0) return std::nullopt;
    RefineOutcome refined =
        refine_plan(store, a.job, out.space, static_cast<int>(a.refine), a.refine_tokens);
    req.choice = refined.search.choice;
    out = plan(store, req);
    take_refined_mix(out.recipe, refined, a.refine);
    return refined;
}

void print_refine(const RefineOutcome& refined) {
    fmt::print(
        "refine ({} mixes measured over {} tokens, {} from the store, {:.0f} s): the "
        "plan's mix {:.6f}, refined {:.6f}\n",
        refined.measured, refined.tokens, refined.reused, refined.seconds, refined.search.start_kld,
        refined.result.kld_mean);
    for (const RefineStep& st : refined.search.steps)
        fmt::print(
            "  round {}: {} single moves measured; {} units moved, predicted {:.6f}, "
            "measured {:.6f} ({})\n",
            st.round, st.candidates, st.moves, st.predicted, st.measured,
            st.accepted ? "kept" : "rejected");
}

int run_gptq_plan(const PlanArgs& a) {
    QL_CHECK(!a.knee && a.pins.empty() && a.ties.empty() && a.min_type.empty() &&
                 a.max_type.empty() && a.export_llama.empty() && a.objective == "mean",
             "plan --format gptq: --knee, --pin, --tie, --min-type, --max-type, --objective and "
             "--export-llama-cpp belong to ggml plans");
    QL_CHECK(a.interactions >= 0 && a.refine >= 0 &&
                 (a.interactions_tokens == 0 || a.interactions > 0) &&
                 (a.refine_tokens == 0 || a.refine > 0),
             "plan --interactions N / --refine N: give a number (0: off); --interactions-tokens "
             "and --refine-tokens belong to them");
    GptqPlanRequest req;
    req.job_id = a.job;
    req.metric = a.metric;
    QL_CHECK((a.target_bpw > 0) != !a.target_size.empty(),
             "plan --format gptq: give exactly one of --target-bpw, --target-size");
    if (a.target_bpw > 0) req.target_bpw = a.target_bpw;
    if (!a.target_size.empty()) {
        if (auto f = gptq_format_from_name(a.target_size))
            req.target_like = *f;
        else
            req.target_bytes = parse_size(a.target_size);
    }
    if (!a.types.empty()) req.formats = parse_gptq_format_list(a.types);
    const Overwrite ow = overwrite_if(a.force);
    for (const std::string& p : {a.output, a.export_gptq, a.frontier_out})
        if (!p.empty()) check_output_path(p, ow);
    jobs::Store store(jobs::resolve_store_path(a.store));
    GptqPlanOutcome out = plan_gptq_from_job(store, req);
    const std::optional<RefineOutcome> refined =
        refine_if_asked(a, store, req, out, plan_gptq_from_job);
    Recipe& r = out.recipe;
    std::optional<InteractionStudy> study;
    if (a.interactions > 0) {
        study = study_interactions(store, a.job, out.choices, static_cast<int>(a.interactions),
                                   a.interactions_tokens);
        r.predicted_kld = study->predicted_kld;
        r.predicted_kld_p99 = study->predicted_kld_p99;
        r.predicted_kld_p999 = study->predicted_kld_p999;
        r.notes.push_back(fmt::format(
            "predicted KLD: the whole mix measured over {} tokens of the sweep's text "
            "(plan --interactions {}; Σ per-unit ΔKLD {:.6f}, pairwise fit {:.6f})",
            study->mix_tokens, a.interactions, study->fit.raw_sum, study->fit.corrected));
    }
    const std::string config =
        a.export_gptq.empty() ? "" : gptq_quantization_config(r, model_tensor_names(r));
    if (!a.output.empty()) save_recipe(r, a.output, ow);
    if (!a.export_gptq.empty()) write_output_file(a.export_gptq, config, ow);
    const nlohmann::json frontier = frontier_json(out.frontier, out.n_params);
    if (!a.frontier_out.empty()) write_output_file(a.frontier_out, frontier.dump(1), ow);
    if (a.json) {
        nlohmann::json choices = nlohmann::json::object();
        for (const auto& [unit, f] : out.choices) choices[unit] = f;
        fmt::print("{}\n",
                   nlohmann::json{{"units", choices},
                                  {"size_bytes", r.predicted_size_bytes},
                                  {"bpw", r.predicted_bpw},
                                  {"predicted_kld", r.predicted_kld},
                                  {"predicted_kld_p99", number_or_null(r.predicted_kld_p99)},
                                  {"predicted_kld_p999", number_or_null(r.predicted_kld_p999)},
                                  {"refine_start_kld",
                                   refined ? number_or_null(refined->search.start_kld) : nullptr},
                                  {"interaction_factor", out.interaction_factor}}
                       .dump(1));
        return 0;
    }
    fmt::print("{:<28} {}\n", "unit", "format");
    for (const auto& [unit, f] : out.choices) fmt::print("{:<28} {}\n", unit, f);
    const std::string how = refined || study ? std::string("the mix measured on the sweep's text")
                                             : fmt::format("Σ {:.6f} × interaction {:.3f}",
                                                           out.raw_error, out.interaction_factor);
    fmt::print(
        "\nGPTQ plan: {} bytes ({:.3f} MB), {:.3f} bpw, predicted KLD {:.6f} ({}), p99 {}, "
        "p99.9 {}; {} bytes kept in 16 bits\n",
        r.predicted_size_bytes, r.predicted_size_bytes / 1e6, r.predicted_bpw, r.predicted_kld, how,
        number_or_dash(r.predicted_kld_p99), number_or_dash(r.predicted_kld_p999), out.fixed_bytes);
    if (refined) print_refine(*refined);
    if (study)
        fmt::print(
            "interactions: Σ per-unit ΔKLD {:.6f}, pairwise fit {:.6f}, the whole mix {:.6f} "
            "({} mixes measured, {} from the store)\n",
            study->fit.raw_sum, study->fit.corrected, study->mix_kld, study->measured,
            study->reused);
    for (const auto& [name, u] : out.uniform)
        fmt::print("uniform {:<11} {:>10} bytes  {:.3f} bpw  measured KLD {:.6f}\n", name, u.first,
                   bits_per_weight(static_cast<double>(u.first), static_cast<double>(out.n_params)),
                   u.second);
    if (!a.output.empty())
        fmt::print("recipe: {}  →  quantlens verify --format gptq --base {} --recipe {}\n",
                   a.output, r.model, a.output);
    return 0;
}

int run_plan(const PlanArgs& a) {
    QL_CHECK(a.format == "ggml" || a.format == "gptq",
             "plan: --format must be ggml or gptq, not '{}'", a.format);
    if (a.format == "gptq") return run_gptq_plan(a);
    PlanRequest req;
    req.job_id = a.job;
    req.metric = a.metric;
    req.objective = a.objective;
    req.knee = a.knee;
    const int modes =
        (a.knee ? 1 : 0) + (a.target_bpw > 0 ? 1 : 0) + (a.target_size.empty() ? 0 : 1);
    QL_CHECK(modes == 1, "plan: give exactly one of --target-bpw, --target-size, --knee");
    if (a.target_bpw > 0) req.target_bpw = a.target_bpw;
    if (!a.target_size.empty()) req.target_bytes = parse_size(a.target_size);
    if (!a.types.empty()) req.types = parse_type_list(a.types);
    auto one_type = [](const std::string& s) {
        auto v = parse_type_list(s);
        QL_CHECK(v.size() == 1, "expected one type, got '{}'", s);
        return v[0];
    };
    if (!a.min_type.empty()) req.min_type = one_type(a.min_type);
    if (!a.max_type.empty()) req.max_type = one_type(a.max_type);
    for (const auto& p : a.pins) {
        const auto eq = p.rfind('=');
        QL_CHECK(eq != std::string::npos && eq > 0, "--pin '{}': expected REGEX=TYPE", p);
        req.pins.push_back({p.substr(0, eq), one_type(p.substr(eq + 1))});
    }
    req.ties = a.ties;
    req.base_rounding_only = a.no_rounding_choice;
    // Every output is checked before the plan is computed and stored, so a refusal changes
    // nothing.
    const Overwrite ow = overwrite_if(a.force);
    for (const std::string& p : {a.output, a.export_gptq, a.frontier_out,
                                 a.export_llama.empty() ? "" : a.export_llama + ".tensor-types.txt",
                                 a.export_llama.empty() ? "" : a.export_llama + ".sh"})
        if (!p.empty()) check_output_path(p, ow);
    QL_CHECK(a.interactions >= 0, "plan --interactions {}: give a number of pairs (0: off)",
             a.interactions);
    QL_CHECK(a.interactions_tokens == 0 || a.interactions > 0,
             "plan --interactions-tokens belongs to --interactions N");
    QL_CHECK(a.refine == 0 || (!a.knee && a.objective == "mean"),
             "plan --refine lowers the measured mean KLD of a budget plan; it needs "
             "--target-size or --target-bpw and --objective mean");
    QL_CHECK(a.interactions == 0 || (a.metric == "kld" && a.objective == "mean"),
             "plan --interactions corrects the predicted mean KLD of a plan by measured KLD; "
             "it needs --metric kld --objective mean, not --metric {} --objective {}",
             a.metric, a.objective);
    jobs::Store store(jobs::resolve_store_path(a.store));
    PlanOutcome out = plan_from_job(store, req);
    const std::optional<RefineOutcome> refined = refine_if_asked(a, store, req, out, plan_from_job);
    std::optional<InteractionStudy> study;
    if (a.interactions > 0) {
        study = study_interactions(store, a.job, out.chosen_items, static_cast<int>(a.interactions),
                                   a.interactions_tokens);
        apply_interaction_fit(out, study->fit,
                              {study->mix_tokens, study->predicted_kld, study->predicted_kld_p99,
                               study->predicted_kld_p999, study->mix_kld});
    }
    const Recipe& r = out.recipe;
    // Refused (naming the tensor) before anything is stored: no ggml type is a GPTQ format.
    const std::string gptq_config =
        a.export_gptq.empty() ? "" : gptq_quantization_config(r, model_tensor_names(r));

    // Stored for the report and the web app's recipe editor.
    nlohmann::json tensors = nlohmann::json::object();
    for (const auto& [name, type] : r.tensors) tensors[name] = ggml_type_display_name(type);
    const nlohmann::json frontier = frontier_json(out.frontier, out.n_params, a.objective);
    const std::string what = a.objective == "p99" ? a.metric + "-p99" : a.metric;
    const std::string name = !a.name.empty()    ? a.name
                             : a.knee           ? "knee"
                             : a.target_bpw > 0 ? fmt::format("{}-bpw{:.2f}", what, a.target_bpw)
                                                : fmt::format("{}-size{}", what, r.budget_value);
    nlohmann::json art = {{"tensors", tensors},
                          {"size_bytes", r.predicted_size_bytes},
                          {"bpw", r.predicted_bpw},
                          {"predicted_kld", r.predicted_kld},
                          {"predicted_kld_p99", number_or_null(r.predicted_kld_p99)},
                          {"predicted_kld_p999", number_or_null(r.predicted_kld_p999)},
                          {"metric", a.metric},
                          {"objective", a.objective},
                          {"interaction_factor", out.interaction_factor},
                          {"frontier", frontier}};
    if (study) {
        nlohmann::json classes = nlohmann::json::array();
        for (const PairClassFit& c : study->fit.classes)
            classes.push_back({{"class", c.name},
                               {"pairs", c.n_pairs},
                               {"measured", c.n_measured},
                               {"weight", c.weight},
                               {"rho", c.rho},
                               {"cross", c.cross},
                               {"rho_se", number_or_null(c.rho_se)},
                               {"cross_se", number_or_null(c.cross_se)}});
        art["predicted_kld_factor"] = out.factor_predicted_kld;
        art["interactions"] = {{"raw_sum", study->fit.raw_sum},
                               {"cross", study->fit.cross},
                               {"cross_se", number_or_null(study->fit.cross_se)},
                               {"corrected", study->fit.corrected},
                               {"classes", classes},
                               {"mix_kld", study->mix_kld},
                               {"mix_tokens", study->mix_tokens},
                               {"mix_tokens_kld", study->predicted_kld},
                               {"measured", study->measured},
                               {"reused", study->reused},
                               {"seconds", study->seconds}};
    }
    if (refined)
        art["refine"] = {{"rounds", a.refine},
                         {"tokens", refined->tokens},
                         {"start_kld", refined->search.start_kld},
                         {"kld", refined->result.kld_mean},
                         {"measured", refined->measured},
                         {"reused", refined->reused},
                         {"seconds", refined->seconds}};
    if (!r.rounding.empty()) {
        nlohmann::json rounding = nlohmann::json::object();
        for (const auto& [tensor, how] : r.rounding) rounding[tensor] = rounding_name(how);
        art["rounding"] = rounding;
    }
    store.put_artifact(a.job, {"plan:" + name, true, art.dump()});

    if (!a.output.empty()) save_recipe(r, a.output, ow);
    const GgmlType base = r.dominant_type();
    if (!a.export_llama.empty()) {
        size_t not_imatrix = 0;
        for (const auto& [tensor, how] : r.rounding) not_imatrix += how != Rounding::imatrix;
        if (not_imatrix > 0)
            fmt::print(stderr,
                       "plan: note: llama-quantize rounds every tensor one way (with its "
                       "--imatrix); {} tensor(s) this recipe rounds plainly or with GPTQ will "
                       "not be written as planned by the export (use quantlens quantize)\n",
                       not_imatrix);
        write_output_file(a.export_llama + ".tensor-types.txt", llama_cpp_tensor_type_file(r, base),
                          ow);
        write_output_file(
            a.export_llama + ".sh",
            "#!/bin/sh\n# Relies on anchored, one-per-tensor patterns: first-match and "
            "last-match llama-quantize versions agree.\n" +
                llama_cpp_quantize_command(r, "model-F16.gguf", "model-mixed.gguf",
                                           a.export_llama + ".tensor-types.txt", "") +
                "\n",
            ow);
    }
    if (!a.export_gptq.empty()) write_output_file(a.export_gptq, gptq_config, ow);
    if (!a.frontier_out.empty()) write_output_file(a.frontier_out, frontier.dump(1), ow);

    if (a.json) {
        fmt::print("{}\n", art.dump(1));
        return 0;
    }
    fmt::print("{:<28} {}\n", "unit", "type");
    for (const auto& [unit, type] : out.choices) fmt::print("{:<28} {}\n", unit, type);
    std::map<std::string, int> counts;
    for (const auto& [unit, type] : out.choices) counts[type]++;
    std::string mix;
    for (const auto& [t, c] : counts) mix += fmt::format("{}×{} ", c, t);
    // Σ per-tensor mean ΔKLD of the choice, whichever objective chose it.
    const double mean_sum =
        a.objective == "p99" ? r.predicted_kld / out.interaction_factor : out.raw_error;
    const std::string how =
        study     ? fmt::format("the whole mix measured over {} tokens of the sweep's text",
                                study->mix_tokens)
        : refined ? fmt::format("the refined mix measured over {} tokens of the sweep's text",
                                refined->tokens)
                  : fmt::format("Σ {:.6f} × interaction {:.3f}", mean_sum, out.interaction_factor);
    fmt::print(
        "\nplan ({}, metric {}, objective {}): {} bytes ({:.3f} MB), {:.3f} bpw, predicted KLD "
        "{:.6f} ({}), p99 {}, p99.9 {}; mix: {}\n",
        r.budget_kind, a.metric, a.objective, r.predicted_size_bytes, r.predicted_size_bytes / 1e6,
        r.predicted_bpw, r.predicted_kld, how, number_or_dash(r.predicted_kld_p99),
        number_or_dash(r.predicted_kld_p999), mix);
    for (const std::string& note : r.notes)
        if (note.rfind("rounding per tensor", 0) == 0) fmt::print("{}\n", note);
    if (refined) print_refine(*refined);
    if (study) {
        const InteractionFit& f = study->fit;
        const auto vs_mix = [&](double v) { return 100.0 * (v / study->mix_kld - 1.0); };
        fmt::print(
            "interactions ({} mixes measured, {} from the store, {:.0f} s), mean KLD on the "
            "sweep's tokens:\n"
            "  Σ per-tensor ΔKLD          {:.6f} ({:+.1f} % vs the mix)\n"
            "  × interaction factor {:.3f} {:.6f} ({:+.1f} %)\n"
            "  + pairwise cross terms     {:.6f} ({:+.1f} %; cross {:+.6f} ± {:.6f})\n"
            "  the whole mix, measured    {:.6f}\n"
            "  predicted: the whole mix over {} tokens of the sweep's text: {:.6f}\n",
            study->measured, study->reused, study->seconds, f.raw_sum, vs_mix(f.raw_sum),
            out.interaction_factor, out.factor_predicted_kld, vs_mix(out.factor_predicted_kld),
            f.corrected, vs_mix(f.corrected), f.cross, f.cross_se, study->mix_kld,
            study->mix_tokens, study->predicted_kld);
        for (const PairClassFit& c : f.classes)
            fmt::print("  {:<15} {:>4} pairs, {:>3} measured, ρ {:+.4f} ± {:.4f}, cross {:+.6f}\n",
                       c.name, c.n_pairs, c.n_measured, c.rho, c.rho_se, c.cross);
    }
    if (a.objective == "p99")
        fmt::print(
            "objective p99: minimized Σ per-tensor Δp99 KLD = {:.6f} (× interaction {:.3f})\n",
            out.raw_error, out.interaction_factor_p99);
    fmt::print(
        "size = tensors + {} bytes kept in float + {} bytes of GGUF header; grain {} bytes\n",
        out.unquantized_bytes, out.header_bytes, out.grain_bytes);
    fmt::print("frontier: {} Pareto points from {:.3f} to {:.3f} MB (--frontier FILE to save)\n",
               out.frontier.size(), out.frontier.front().bytes / 1e6,
               out.frontier.back().bytes / 1e6);
    if (!a.output.empty())
        fmt::print("recipe: {}  →  quantlens quantize {} --recipe {} -o out.gguf\n", a.output,
                   r.model, a.output);
    return 0;
}

}  // namespace

QL_COMMAND(plan, PlanArgs,
           "Choose a type per tensor from a sweep: exact size-budget optimum or jump knee") {
    cmd.add_option("JOB", o->job, "Sweep job id")->required();
    cmd.add_option("--target-bpw", o->target_bpw, "Budget in bits per weight (whole file)")
        ->check(CLI::Range(0.5, 64.0));
    cmd.add_option("--target-size", o->target_size,
                   "Budget as a file size: 5373408, 5.37MB, 4.2GiB");
    cmd.add_flag("--knee", o->knee,
                 "Jump knee: per tensor, stop before the first disproportionate error jump");
    cmd.add_option("--metric", o->metric, "kld | ppl | proxy (imatrix-weighted weight error)")
        ->capture_default_str();
    cmd.add_option("--objective", o->objective,
                   "mean | p99: minimize Σ per-tensor mean ΔKLD, or Σ per-tensor Δp99 KLD (an "
                   "additive proxy of the mix's p99; needs a sweep that recorded kld_p99)")
        ->capture_default_str();
    cmd.add_option("--types", o->types, "Restrict to these types");
    cmd.add_option("--min-type", o->min_type, "No type below this one's bits");
    cmd.add_option("--max-type", o->max_type, "No type above this one's bits");
    cmd.add_option("--pin", o->pins, "REGEX=TYPE: force matching units to TYPE (repeatable)");
    cmd.add_option("--tie", o->ties,
                   "REGEX: matching units of the same role take one type across layers, e.g. "
                   "'ffn_.*_exps' (repeatable)");
    cmd.add_flag("--no-rounding-choice", o->no_rounding_choice,
                 "On a sweep --rounding-choice job: only the base rounding's measurements (for "
                 "comparison); the recipe then records no per-tensor rounding");
    cmd.add_option("--interactions", o->interactions,
                   "N: measure the chosen mix and ~N pairs of its units at their types on the "
                   "sweep's tokens; the mix's KLD is the prediction, the pairwise fit is shown "
                   "beside it; stored in the job, so a re-plan re-measures nothing (0: off)")
        ->capture_default_str();
    cmd.add_option(
        "--refine", o->refine,
        "N: up to N rounds improving a GPTQ plan by measured mixes: each unit moved to "
        "its neighbouring formats in the mix, the moves re-planned by the knapsack, kept "
        "if the measured KLD falls (analysis/studies/refine.h)");
    cmd.add_option(
        "--refine-tokens", o->refine_tokens,
        "T: with --refine, measure the mixes over the first T tokens of the sweep's text "
        "(default: the sweep's own)");
    cmd.add_option("--interactions-tokens", o->interactions_tokens,
                   "T: with --interactions, measure the mix (the prediction) over the first T "
                   "tokens of the sweep's text instead of the sweep's own (0: the sweep's)")
        ->capture_default_str();
    cmd.add_option("-o,--output", o->output, "Recipe file (.json or .yaml)");
    cmd.add_option("--export-llama-cpp", o->export_llama,
                   "PREFIX: write PREFIX.tensor-types.txt and PREFIX.sh");
    cmd.add_option("--export-gptq", o->export_gptq,
                   "GPTQ quantization_config JSON (GPTQModel, vLLM); needs --format gptq");
    cmd.add_option("--format", o->format,
                   "ggml (llama.cpp types) | gptq (GPTQ formats of a `sweep --types gptq` job; "
                   "--target-size may name one, e.g. gptq4g128, for its uniform size)")
        ->capture_default_str();
    cmd.add_option("--frontier", o->frontier_out, "Write the Pareto frontier as JSON");
    cmd.add_flag("--force,-f", o->force, "Overwrite existing output files");
    cmd.add_option("--name", o->name, "Name of the plan in the job store");
    add_store_option(cmd, o->store);
    cmd.add_flag("--json", o->json, "Print the plan as JSON");
    return [o] { return quantlens::cli::run_plan(*o); };
}

}  // namespace quantlens::cli
