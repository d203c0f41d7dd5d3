// `plan --format gptq`: see gptq_plan.h.
#include "analysis/plan/gptq_plan.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include "analysis/plan/plan_job.h"
#include "analysis/write/gptq_formats.h"
#include "core/error.h"
#include "jobs/metric_names.h"
#include "jobs/store.h"
#include "model/model.h"

namespace quantlens {
namespace {

using json = nlohmann::json;
constexpr const char* kAllUnit = "(all)";

}  // namespace

GptqPlanOutcome plan_gptq_from_job(jobs::Store& store, const GptqPlanRequest& req) {
    const jobs::Job job = store.get_job(req.job_id);
    QL_CHECK(job.kind == jobs::JobKind::sweep, "job {} is a {} job; plan needs a sweep job",
             req.job_id, jobs::kind_name(job.kind));
    const json params = json::parse(job.params);
    QL_CHECK(params.contains("gptq_formats"),
             "plan --format gptq: job {} measured ggml types, not GPTQ formats (sweep --types "
             "gptq)",
             req.job_id);
    QL_CHECK(req.metric == "kld" || req.metric == "ppl",
             "plan --format gptq: --metric must be kld or ppl, not '{}'", req.metric);
    const std::string metric_key = req.metric == "kld" ? metric::kld_mean : metric::ln_ppl_ratio;

    GptqPlanOutcome out;
    const std::string model_path = params.at("model").get<std::string>();
    auto model = Model::open(model_path);
    for (const auto& t : model->tensors()) out.n_params += t.n_elements();
    out.fixed_bytes = gptq_unquantized_bytes(*model);

    SweepMeasurements m = sweep_measurements(store, req.job_id);
    for (const auto& [type, metrics] : m[kAllUnit])
        if (metrics.count(metric::bytes))
            out.uniform[type] = {
                out.fixed_bytes + static_cast<uint64_t>(metrics.at(metric::bytes)),
                metrics.count(metric::kld_mean) ? metrics.at(metric::kld_mean) : std::nan("")};

    PlanProblem problem;
    problem.fixed_bytes = out.fixed_bytes;
    std::vector<std::vector<GptqFormat>> formats;  // [unit][option]
    std::vector<std::vector<std::string>> unit_tensors;
    for (const auto& u : store.units(req.job_id)) {
        if (u.name == kAllUnit) continue;
        PlanUnit pu{u.name, {}};
        std::vector<std::pair<PlanOption, GptqFormat>> opts;
        for (const auto& [name, metrics] : m[u.name]) {
            const auto f = gptq_format_from_name(name);
            if (!f || !allowed_by(req.formats, *f)) continue;
            auto it = metrics.find(metric_key);
            if (it == metrics.end()) continue;  // not measured (yet)
            opts.push_back({{GgmlType::F32, static_cast<uint64_t>(metrics.at(metric::bytes)),
                             std::max(it->second, 0.0)},
                            *f});
        }
        QL_CHECK(!opts.empty(), "plan --format gptq: unit '{}' has no measured format allowed",
                 u.name);
        std::sort(opts.begin(), opts.end(),
                  [](const auto& a, const auto& b) { return a.first.bytes > b.first.bytes; });
        std::vector<GptqFormat> fs;
        for (const auto& [o, f] : opts) pu.options.push_back(o), fs.push_back(f);
        problem.units.push_back(pu);
        formats.push_back(fs);
        unit_tensors.push_back(
            json::parse(u.extra).value("tensors", std::vector<std::string>{u.name}));
    }
    QL_CHECK(!problem.units.empty(), "job {}: no measured units", req.job_id);

    // Interaction factor, as plan_job.h: median over formats of "(all)" KLD / Σ unit ΔKLD.
    if (const auto f = interaction_factor(m, problem.units); f && req.metric == "kld")
        out.interaction_factor = *f;

    Recipe& recipe = out.recipe;
    uint64_t budget = 0;
    if (req.target_like) {
        const std::string name = gptq_format_name(*req.target_like);
        QL_CHECK(out.uniform.count(name),
                 "plan --format gptq: --target-size {}: job {} has no uniform \"(all)\" item at "
                 "{} (sweep without --no-uniform, with that format)",
                 name, req.job_id, name);
        budget = out.uniform.at(name).first;
        recipe.budget_kind = "size";
        recipe.notes.push_back(
            fmt::format("budget: the size of uniform {} ({} bytes)", name, budget));
    } else if (req.target_bytes) {
        budget = *req.target_bytes;
        recipe.budget_kind = "size";
    } else {
        QL_CHECK(req.target_bpw.has_value(),
                 "plan --format gptq: give --target-bpw or --target-size");
        budget = static_cast<uint64_t>(*req.target_bpw * static_cast<double>(out.n_params) / 8.0);
        recipe.budget_kind = "bpw";
    }
    recipe.budget_value = static_cast<double>(budget);
    KnapsackPlanner planner(problem);
    const PlanResult r = req.choice ? evaluate_choice(problem, *req.choice) : planner.solve(budget);
    QL_CHECK(r.bytes <= budget,
             "plan --format gptq: the given choice's {} bytes exceed the budget of {}", r.bytes,
             budget);
    out.raw_error = r.error;
    for (const auto& p : planner.frontier(200))
        out.frontier.push_back({p.bytes, p.error * out.interaction_factor});

    set_plan_provenance(recipe, model_path, job.model_hash, req, r.bytes, out.n_params);
    recipe.gptq_desc_act = params.value("gptq_act_order", false);
    for (size_t i = 0; i < problem.units.size(); ++i) {
        const GptqFormat f = formats[i][r.choice[i]];
        out.choices.push_back({problem.units[i].name, gptq_format_name(f)});
        for (const auto& t : unit_tensors[i]) recipe.gptq_tensors[t] = f;
        out.space.parts.emplace_back();
        for (const GptqFormat& option : formats[i])
            out.space.parts.back().push_back({{problem.units[i].name, gptq_format_name(option)}});
    }
    out.space.problem = std::move(problem);
    out.space.budget = budget;
    out.space.choice = r.choice;
    recipe.predicted_kld = predicted_kld(m, out.choices, out.interaction_factor);
    recipe.notes.push_back(fmt::format(
        "GPTQ recipe ({}, {}): sizes are checkpoint tensor bytes (qweight, qzeros, scales, g_idx; "
        "other tensors in 16 bits)",
        params.contains("gptq_text") ? "GPTQ error feedback" : "plain rounding",
        recipe.gptq_desc_act ? "act order" : "column order"));
    return out;
}

}  // namespace quantlens
