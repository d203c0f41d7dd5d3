#include "analysis/plan/plan_job.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>

#include <fmt/format.h>

#include "analysis/write/gguf_metadata.h"
#include "analysis/write/rounding.h"
#include "core/error.h"
#include "formats/gguf.h"
#include "jobs/metric_names.h"
#include "jobs/store.h"
#include "model/model.h"
#include "quant/quant.h"

namespace quantlens {
namespace {

using json = nlohmann::json;
constexpr const char* kAllUnit = "(all)";

constexpr uint64_t kGgufAlignment = 32;  // what quantize writes (general.alignment unset)

uint64_t round_up_to_alignment(uint64_t n) {
    return (n + kGgufAlignment - 1) / kGgufAlignment * kGgufAlignment;
}

double median(std::vector<double> v) {
    if (v.empty()) return std::nan("");
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

SweepMeasurements sweep_measurements(jobs::Store& store, int64_t job_id) {
    SweepMeasurements m;
    for (const auto& x : store.measurements(job_id)) m[x.unit][x.type][x.metric] = x.value;
    return m;
}

void set_plan_provenance(Recipe& recipe, const std::string& model, const std::string& model_hash,
                         const PlanTarget& req, uint64_t bytes, int64_t n_params) {
    recipe.model = model;
    recipe.model_hash = model_hash;
    recipe.job_id = req.job_id;
    recipe.metric = req.metric;
    recipe.predicted_size_bytes = bytes;
    recipe.predicted_bpw =
        bits_per_weight(static_cast<double>(bytes), static_cast<double>(n_params));
}

std::optional<double> interaction_factor(const SweepMeasurements& m,
                                         const std::vector<PlanUnit>& units,
                                         const std::string& metric) {
    const auto all = m.find(kAllUnit);
    if (all == m.end()) return std::nullopt;
    std::vector<double> ratios;
    for (const auto& [type, metrics] : all->second) {
        const auto kld = metrics.find(metric);
        if (kld == metrics.end()) continue;
        double sum = 0;
        for (const auto& pu : units) {
            const auto unit = m.find(pu.name);
            if (unit == m.end()) continue;
            const auto at_type = unit->second.find(type);
            if (at_type == unit->second.end()) continue;
            const auto unit_kld = at_type->second.find(metric);
            if (unit_kld != at_type->second.end()) sum += std::max(0.0, unit_kld->second);
        }
        if (sum > 0) ratios.push_back(kld->second / sum);
    }
    if (ratios.empty()) return std::nullopt;
    return median(ratios);
}

double predicted_kld(const SweepMeasurements& m,
                     const std::vector<std::pair<std::string, std::string>>& chosen, double factor,
                     const std::string& metric) {
    double kld_sum = 0;
    for (const auto& [unit, type] : chosen) {
        const auto u = m.find(unit);
        if (u == m.end()) return std::nan("");
        const auto t = u->second.find(type);
        if (t == u->second.end()) return std::nan("");
        const auto kld = t->second.find(metric);
        if (kld == t->second.end()) return std::nan("");
        kld_sum += std::max(0.0, kld->second);
    }
    return kld_sum * factor;
}

void apply_interaction_fit(PlanOutcome& out, const InteractionFit& fit, const MeasuredMix& mix) {
    const double raw = out.factor_predicted_kld / out.interaction_factor;
    QL_CHECK(std::abs(fit.raw_sum - raw) <= 1e-9 * std::max(1.0, std::abs(raw)),
             "interactions: the fit sums Σ ΔKLD = {:.9f}, the plan {:.9f}: not this plan's choice",
             fit.raw_sum, raw);
    QL_CHECK(std::isfinite(mix.kld_mean) && mix.kld_mean > 0,
             "interactions: the measured mix's KLD is {}, not a positive number", mix.kld_mean);
    Recipe& r = out.recipe;
    r.predicted_kld = mix.kld_mean;
    if (std::isfinite(mix.kld_p99)) r.predicted_kld_p99 = mix.kld_p99;
    if (std::isfinite(mix.kld_p999)) r.predicted_kld_p999 = mix.kld_p999;
    std::erase_if(r.notes, [](const std::string& n) {
        return n.find("× interaction factor") != std::string::npos;
    });
    std::string classes;
    for (const PairClassFit& c : fit.classes)
        classes += fmt::format("; {} ρ {:+.4f} ± {:.4f} ({} of {} pairs)", c.name, c.rho, c.rho_se,
                               c.n_measured, c.n_pairs);
    r.notes.push_back(fmt::format(
        "predicted KLD = the whole mix measured over {} tokens of the sweep's text ({:.6f}; plan "
        "--interactions). On the sweep's tokens: mix {:.6f}; Σ per-tensor ΔKLD {:.6f}; × "
        "interaction factor {:.6f}; + pairwise cross terms {:+.6f} ± {:.6f} = {:.6f}{}",
        mix.n_tokens, mix.kld_mean, mix.sweep_tokens_kld_mean, fit.raw_sum,
        out.factor_predicted_kld, fit.cross, fit.cross_se, fit.corrected, classes));
}

uint64_t parse_size(const std::string& text) {
    size_t pos = 0;
    double value = 0;
    try {
        value = std::stod(text, &pos);
    } catch (...) {
        fail("size '{}' is not a number (examples: 5373408, 5.37MB, 4.2GiB)", text);
    }
    std::string unit = text.substr(pos);
    unit.erase(0, unit.find_first_not_of(' '));
    std::transform(unit.begin(), unit.end(), unit.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    static const std::map<std::string, double> units = {{"", 1},
                                                        {"b", 1},
                                                        {"kb", 1e3},
                                                        {"k", 1e3},
                                                        {"mb", 1e6},
                                                        {"m", 1e6},
                                                        {"gb", 1e9},
                                                        {"g", 1e9},
                                                        {"tb", 1e12},
                                                        {"kib", 1024.0},
                                                        {"mib", 1048576.0},
                                                        {"gib", 1073741824.0},
                                                        {"tib", 1099511627776.0}};
    auto it = units.find(unit);
    QL_CHECK(it != units.end(), "size '{}': unknown unit '{}' (use B, kB, MB, GB, KiB, MiB, GiB)",
             text, unit);
    QL_CHECK(value > 0, "size '{}' must be positive", text);
    return static_cast<uint64_t>(value * it->second);
}

uint64_t gguf_header_bytes(const Model& model) {
    GgufKvList kv = converter_metadata(model);
    finish_quantized_metadata(kv, 15);  // the file type's value, not its size, varies
    GgufWriter w;
    for (auto& [k, v] : kv) w.add_kv(k, v);
    // A tensor's type and bytes do not change the header's size; F32 declares them simply.
    const auto declare = [&](const std::string& name, const std::vector<int64_t>& ne) {
        int64_t n = 1;
        for (const int64_t d : ne) n *= d;
        w.add_tensor(name, ne, GgmlType::F32, static_cast<uint64_t>(n) * 4,
                     [](std::vector<uint8_t>&) {});
    };
    for (const auto& t : model.tensors()) declare(t.name, t.ne);
    for (const auto& t : converter_extra_tensors(model)) declare(t.name, t.ne);
    return w.data_offset();
}

uint64_t gguf_tensor_file_bytes(const std::vector<int64_t>& ne, GgmlType type) {
    QL_CHECK(!ne.empty() && ne[0] > 0, "tensor with no row length");
    int64_t rows = 1;
    for (size_t i = 1; i < ne.size(); ++i) rows *= ne[i];
    const GgmlType written = type_fits_row(type, ne[0]) ? type : fallback_type(type, ne[0]);
    return round_up_to_alignment(ggml_row_size(written, ne[0]) * static_cast<uint64_t>(rows));
}

namespace {

// --tie: merges the units each regex matches into one unit per name-without-layer, whose
// options are the types all members have (bytes and errors summed). `members` holds each
// unit's sweep unit names and `tensors` its tensors; both are merged alongside.
void tie_units(const std::vector<std::string>& ties, PlanProblem& problem,
               std::vector<std::vector<std::string>>& members,
               std::vector<std::vector<std::string>>& tensors) {
    if (ties.empty()) return;
    std::vector<std::regex> res;
    for (const auto& pattern : ties) {
        try {
            res.emplace_back(pattern);
        } catch (const std::regex_error& e) {
            fail("--tie '{}': not a valid regular expression: {}", pattern, e.what());
        }
    }
    static const std::regex layer_number(R"(blk\.\d+)");
    std::vector<bool> matched(res.size(), false);
    std::map<std::string, size_t> group_of;  // group key → index in the new problem
    PlanProblem out;
    out.fixed_bytes = problem.fixed_bytes;
    std::vector<std::vector<std::string>> out_members, out_tensors;
    for (size_t i = 0; i < problem.units.size(); ++i) {
        PlanUnit& u = problem.units[i];
        std::optional<size_t> tie;
        for (size_t r = 0; r < res.size() && !tie; ++r)
            if (std::regex_search(u.name, res[r])) tie = r, matched[r] = true;
        if (!tie) {
            out.units.push_back(std::move(u));
            out_members.push_back(std::move(members[i]));
            out_tensors.push_back(std::move(tensors[i]));
            continue;
        }
        const std::string name = std::regex_replace(u.name, layer_number, "blk.*");
        const std::string key = fmt::format("{}\n{}", *tie, name);
        const auto it = group_of.find(key);
        if (it == group_of.end()) {
            group_of[key] = out.units.size();
            u.name = name;
            out.units.push_back(std::move(u));
            out_members.push_back(std::move(members[i]));
            out_tensors.push_back(std::move(tensors[i]));
            continue;
        }
        PlanUnit& g = out.units[it->second];
        std::vector<PlanOption> both;
        for (const PlanOption& a : g.options)
            for (const PlanOption& b : u.options)
                if (a.type == b.type)
                    both.push_back({a.type, a.bytes + b.bytes, a.error + b.error});
        QL_CHECK(!both.empty(),
                 "--tie '{}': '{}' and the units tied with it ('{}') have no measured type in "
                 "common",
                 ties[*tie], u.name, g.name);
        g.options = std::move(both);
        auto& gm = out_members[it->second];
        gm.insert(gm.end(), members[i].begin(), members[i].end());
        auto& gt = out_tensors[it->second];
        gt.insert(gt.end(), tensors[i].begin(), tensors[i].end());
    }
    for (size_t r = 0; r < res.size(); ++r)
        QL_CHECK(matched[r], "--tie '{}': the pattern matches none of the {} units (e.g. '{}')",
                 ties[r], problem.units.size(),
                 problem.units.empty() ? std::string() : problem.units.front().name);
    problem = std::move(out);
    members = std::move(out_members);
    tensors = std::move(out_tensors);
}

}  // namespace

PlanOutcome plan_from_job(jobs::Store& store, const PlanRequest& req) {
    const jobs::Job job = store.get_job(req.job_id);
    QL_CHECK(job.kind == jobs::JobKind::sweep, "job {} is a {} job; plan needs a sweep job",
             req.job_id, jobs::kind_name(job.kind));
    const auto info_art = store.get_artifact(req.job_id, "model_info");
    QL_CHECK(info_art.has_value(), "job {}: no model_info (was it made by quantlens sweep?)",
             req.job_id);
    const json info = json::parse(info_art->data);
    const json params = json::parse(job.params);
    QL_CHECK(params.value("granularity", "") != "placement",
             "job {} is a placement study (sweep --placement); plan needs a tensor, layer or "
             "class sweep",
             req.job_id);

    PlanOutcome out;
    out.n_params = info.at("n_params").get<int64_t>();
    // Exact file bytes: the header as the writer serializes it, every tensor padded to the
    // alignment at the type it is written in (fallbacks applied), extra tensors in F32.
    std::map<std::string, std::vector<int64_t>> tensor_shapes;
    for (const auto& t : info.at("tensors")) {
        const auto ne = t.at("ne").get<std::vector<int64_t>>();
        if (t.at("quantizable").get<bool>())
            tensor_shapes[t.at("name").get<std::string>()] = ne;
        else
            out.unquantized_bytes += gguf_tensor_file_bytes(ne, GgmlType::F32);
    }
    {
        const auto model = Model::open(params.at("model").get<std::string>());
        out.header_bytes = gguf_header_bytes(*model);
        for (const auto& t : converter_extra_tensors(*model))
            out.unquantized_bytes += round_up_to_alignment(t.values.size() * sizeof(float));
    }

    SweepMeasurements m = sweep_measurements(store, req.job_id);
    const std::string metric_key = req.metric == "kld"     ? metric::kld_mean
                                   : req.metric == "ppl"   ? metric::ln_ppl_ratio
                                   : req.metric == "proxy" ? "proxy"
                                                           : "";
    QL_CHECK(!metric_key.empty(), "--metric must be kld, ppl or proxy, not '{}'", req.metric);
    QL_CHECK(req.objective == "mean" || req.objective == "p99",
             "--objective must be mean or p99, not '{}'", req.objective);
    const bool p99_objective = req.objective == "p99";
    QL_CHECK(!p99_objective || req.metric == "kld",
             "--objective p99 ranks measured KLD tails; it needs --metric kld, not '{}'",
             req.metric);
    if (p99_objective) {
        bool any_tail = false;
        for (const auto& [unit, types] : m)
            for (const auto& [type, metrics] : types)
                any_tail |= metrics.count(metric::kld_p99) > 0;
        QL_CHECK(any_tail,
                 "plan --objective p99: sweep job {} recorded no '{}' (swept before the tails "
                 "were recorded, or by a backend that returns no per-token KLD); sweep again or "
                 "plan with --objective mean",
                 req.job_id, metric::kld_p99);
    }
    const std::string objective_key = p99_objective ? metric::kld_p99 : metric_key;

    std::vector<std::regex> pin_res;
    for (const auto& [pattern, type] : req.pins) {
        try {
            pin_res.emplace_back(pattern);
        } catch (const std::regex_error& e) {
            fail("--pin '{}': not a valid regular expression: {}", pattern, e.what());
        }
    }

    // sweep --rounding-choice: bare types were measured at the base rounding, "<type>+<rounding>"
    // items at the others; each unit's option at a type is its best measured rounding.
    const bool rounding_choice = params.value("rounding_choice", false) && !req.base_rounding_only;
    const Rounding base = base_rounding(!params.value("imatrix", std::string()).empty());
    std::map<std::string, std::map<GgmlType, std::string>> item_of;  // sweep unit → type → item
    std::map<std::string, std::vector<std::string>> tensors_of;      // sweep unit → tensors

    std::vector<bool> pin_matched(pin_res.size(), false);
    PlanProblem problem;
    problem.fixed_bytes = out.header_bytes + out.unquantized_bytes;
    std::vector<std::vector<std::string>> unit_tensors;
    std::vector<std::vector<std::string>> unit_members;  // sweep units behind each plan unit
    for (const auto& u : store.units(req.job_id)) {
        // Expert units (sweep --experts) measure slices of stacked tensors, which a GGUF
        // stores with one type: they inform, the stacked tensors' own units are chosen.
        if (u.name == kAllUnit || u.role == "expert") continue;
        const auto members =
            json::parse(u.extra).value("tensors", std::vector<std::string>{u.name});
        // A unit's bytes in the file; the sweep's measured bytes (unpadded) only for a unit
        // whose tensors model_info does not list.
        const auto unit_file_bytes = [&](GgmlType type, double measured) {
            uint64_t bytes = 0;
            for (const auto& name : members) {
                const auto it = tensor_shapes.find(name);
                if (it == tensor_shapes.end()) return static_cast<uint64_t>(measured);
                bytes += gguf_tensor_file_bytes(it->second, type);
            }
            return bytes;
        };
        PlanUnit pu{u.name, {}};
        std::optional<GgmlType> pinned;
        for (size_t i = 0; i < pin_res.size(); ++i)
            if (std::regex_search(u.name, pin_res[i])) {
                pinned = req.pins[i].second;
                pin_matched[i] = true;
            }
        tensors_of[u.name] = members;
        std::map<GgmlType, size_t> option_of;  // type → index in pu.options
        // Bare names sort before "<type>+<rounding>": the base rounding wins a tie.
        for (const auto& [type_name, metrics] : m[u.name]) {
            const auto rt = parse_rounded_type(type_name);
            if (!rt || (rt->second && !rounding_choice)) continue;
            const auto measured = metrics.find(metric::rounding_measured);
            if (measured != metrics.end() && measured->second == 0) continue;  // proxy only
            const std::optional<GgmlType> t = rt->first;
            if (!allowed_by(req.types, *t)) continue;
            if (req.min_type && ggml_type_bpw(*t) < ggml_type_bpw(*req.min_type)) continue;
            if (req.max_type && ggml_type_bpw(*t) > ggml_type_bpw(*req.max_type)) continue;
            if (pinned && *t != *pinned) continue;
            double e;
            if (metric_key == "proxy") {
                auto it = metrics.find(metric::w_imat_rel);
                e = it != metrics.end()
                        ? it->second
                        : metrics.at(metric::w_rel_fro) * metrics.at(metric::w_rel_fro);
            } else {
                auto it = metrics.find(objective_key);
                if (it == metrics.end()) continue;  // not measured (yet)
                e = it->second;
            }
            const PlanOption option{*t, unit_file_bytes(*t, metrics.at(metric::bytes)),
                                    std::max(e, 0.0)};
            const auto same_type = option_of.find(*t);
            if (same_type == option_of.end()) {
                option_of[*t] = pu.options.size();
                pu.options.push_back(option);
            } else if (option.error < pu.options[same_type->second].error) {
                pu.options[same_type->second] = option;  // same bytes, less error
            } else {
                continue;
            }
            item_of[u.name][*t] = type_name;
        }
        QL_CHECK(!pu.options.empty(),
                 "plan: unit '{}' has no measured type allowed by the options{}", u.name,
                 pinned ? fmt::format(" (pinned to {}, which the sweep did not measure)",
                                      ggml_type_display_name(*pinned))
                        : "");
        std::sort(pu.options.begin(), pu.options.end(),
                  [](const PlanOption& a, const PlanOption& b) { return a.bytes > b.bytes; });
        problem.units.push_back(pu);
        unit_tensors.push_back(members);
        unit_members.push_back({u.name});
    }
    QL_CHECK(!problem.units.empty(), "job {}: no measured units", req.job_id);
    for (size_t i = 0; i < pin_res.size(); ++i)
        QL_CHECK(pin_matched[i],
                 "--pin '{}={}': the pattern matches none of job {}'s {} units (e.g. '{}')",
                 req.pins[i].first, ggml_type_display_name(req.pins[i].second), req.job_id,
                 problem.units.size(), problem.units.front().name);

    // Interaction factors from the "(all)" measurements (only meaningful for the KLD metric).
    if (const auto f = interaction_factor(m, problem.units)) out.interaction_factor = *f;
    if (const auto f = interaction_factor(m, problem.units, metric::kld_p99))
        out.interaction_factor_p99 = *f;
    if (const auto f = interaction_factor(m, problem.units, metric::kld_p999))
        out.interaction_factor_p999 = *f;
    const double objective_factor = req.metric != "kld" ? 1.0
                                    : p99_objective     ? out.interaction_factor_p99
                                                        : out.interaction_factor;

    tie_units(req.ties, problem, unit_members, unit_tensors);

    KnapsackPlanner planner(problem);
    PlanResult r;
    Recipe& recipe = out.recipe;
    if (req.knee) {
        QL_CHECK(!req.choice, "plan --knee takes no given choice (--refine needs a budget)");
        r = plan_jump_knee(problem);
        recipe.budget_kind = "knee";
    } else {
        uint64_t budget = 0;
        if (req.target_bytes) {
            budget = *req.target_bytes;
            recipe.budget_kind = "size";
        } else {
            QL_CHECK(req.target_bpw.has_value(),
                     "plan: give --target-bpw, --target-size or --knee");
            budget =
                static_cast<uint64_t>(*req.target_bpw * static_cast<double>(out.n_params) / 8.0);
            recipe.budget_kind = "bpw";
        }
        recipe.budget_value = static_cast<double>(budget);
        if (req.choice) {
            r = evaluate_choice(problem, *req.choice);
            QL_CHECK(r.bytes <= budget, "plan: the given choice's {} bytes exceed the budget of {}",
                     r.bytes, budget);
        } else {
            r = planner.solve(budget);
        }
        out.space.budget = budget;
        out.space.choice = r.choice;
        for (size_t i = 0; i < problem.units.size(); ++i) {
            out.space.parts.emplace_back();
            for (const PlanOption& o : problem.units[i].options) {
                UnitItems items;
                for (const std::string& member : unit_members[i])
                    items.emplace_back(member, item_of[member][o.type]);
                out.space.parts.back().push_back(std::move(items));
            }
        }
        out.space.problem = problem;
    }
    out.grain_bytes = r.grain_bytes;
    out.raw_error = r.error;
    for (const auto& p : planner.frontier(200))
        out.frontier.push_back({p.bytes, p.error * objective_factor});

    set_plan_provenance(recipe, params.at("model").get<std::string>(), job.model_hash, req, r.bytes,
                        out.n_params);
    recipe.objective = req.objective;
    // Whatever drove the choice, its predicted KLD comes from the measured per-unit ΔKLD
    // (so a proxy-driven recipe is predicted on the same scale as a KLD-driven one).
    std::vector<std::pair<std::string, std::string>> chosen;  // (sweep unit, measured item)
    for (size_t i = 0; i < problem.units.size(); ++i) {
        const GgmlType type = problem.units[i].options[r.choice[i]].type;
        for (const std::string& member : unit_members[i])
            chosen.emplace_back(member, item_of[member][type]);
    }
    recipe.predicted_kld = predicted_kld(m, chosen, out.interaction_factor);
    out.factor_predicted_kld = recipe.predicted_kld;
    out.chosen_items = chosen;
    recipe.predicted_kld_p99 =
        predicted_kld(m, chosen, out.interaction_factor_p99, metric::kld_p99);
    recipe.predicted_kld_p999 =
        predicted_kld(m, chosen, out.interaction_factor_p999, metric::kld_p999);
    for (size_t i = 0; i < problem.units.size(); ++i) {
        const GgmlType t = problem.units[i].options[r.choice[i]].type;
        // A unit tied from several is shown by its type; its members' roundings may differ.
        out.choices.push_back({problem.units[i].name, unit_members[i].size() == 1
                                                          ? item_of[unit_members[i][0]][t]
                                                          : ggml_type_display_name(t)});
        for (const auto& tensor : unit_tensors[i]) recipe.tensors[tensor] = t;
        if (!rounding_choice || !ggml_type_info(t).quantized) continue;
        for (const std::string& member : unit_members[i]) {
            const auto rt = parse_rounded_type(item_of[member][t]);
            for (const auto& tensor : tensors_of[member])
                recipe.rounding[tensor] = rt->second.value_or(base);
        }
    }
    recipe.default_type = recipe.dominant_type();
    if (rounding_choice) {
        std::map<Rounding, int> n;
        for (const auto& [tensor, how] : recipe.rounding) ++n[how];
        recipe.notes.push_back(fmt::format(
            "rounding per tensor (sweep --rounding-choice, base {}): {} gptq, {} imatrix, {} "
            "plain; quantize needs{}{}",
            rounding_name(base), n[Rounding::gptq], n[Rounding::imatrix], n[Rounding::plain],
            n[Rounding::imatrix] + n[Rounding::gptq] > 0 ? " --imatrix (the sweep's)" : "",
            n[Rounding::gptq] > 0 ? " and --gptq TEXT (the sweep's calibration text)" : ""));
    }
    if (req.metric == "kld" && !p99_objective && out.interaction_factor != 1.0)
        recipe.notes.push_back(fmt::format(
            "predicted KLD = Σ per-tensor ΔKLD ({:.6f}) × interaction factor {:.3f} fitted on the "
            "uniform-type measurements",
            r.error, out.interaction_factor));
    if (p99_objective)
        recipe.notes.push_back(fmt::format(
            "objective p99: the knapsack minimized Σ per-tensor Δp99 KLD ({:.6f}), an additive "
            "proxy of the mix's p99 (predicted {:.6f} with the interaction factor {:.3f})",
            r.error, recipe.predicted_kld_p99, out.interaction_factor_p99));
    return out;
}

}  // namespace quantlens
