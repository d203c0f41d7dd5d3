// `sweep --rounding-choice`: see rounding_choice.h.
#include "analysis/sweep/rounding_choice.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include "analysis/write/gptq_rounding.h"
#include "analysis/write/rounding.h"
#include "core/error.h"
#include "jobs/metric_names.h"
#include "model/model.h"
#include "quant/quant.h"

namespace quantlens {
namespace {

using json = nlohmann::json;

GgmlType written_type(GgmlType type, int64_t n_per_row) {
    return type_fits_row(type, n_per_row) ? type : fallback_type(type, n_per_row);
}

}  // namespace

RoundingDecisions rounding_proxies(
    const RoundingProxyInputs& in,
    const std::map<std::string, std::vector<std::string>>& unit_tensors,
    const std::vector<jobs::WorkItem>& items) {
    // unit → type → its alternative roundings.
    std::map<std::string, std::map<GgmlType, std::vector<Rounding>>> alternatives;
    for (const auto& item : items)
        if (const auto rt = parse_rounded_type(item.type); rt && rt->second)
            alternatives[item.unit][rt->first].push_back(*rt->second);
    const Rounding base = base_rounding(in.imatrix != nullptr);
    RoundingDecisions out;
    for (const auto& [unit, by_type] : alternatives) {
        const auto members = unit_tensors.find(unit);
        QL_CHECK(members != unit_tensors.end(), "sweep: no unit '{}'", unit);
        // (type, rounding) → Σ proxy over the unit's tensors; one tensor in memory at a time.
        std::map<std::pair<GgmlType, Rounding>, double> proxy;
        std::map<std::pair<GgmlType, Rounding>, bool> applies;
        for (const auto& [type, roundings] : by_type)
            for (const Rounding r : roundings) applies[{type, r}] = true;
        for (const std::string& name : members->second) {
            const TensorInfo& t = in.model->get(name);
            bool any = false;
            for (auto& [key, ok] : applies) {
                ok = ok && rounding_applies(t, written_type(key.first, t.n_per_row()), key.second,
                                            in.imatrix, in.gptq);
                any = any || ok;
            }
            if (!any) continue;
            const std::vector<float> original = in.original(name);
            const std::vector<double> hessian = in.gptq && in.gptq->has_hessian(name)
                                                    ? in.gptq->hessian(name)
                                                    : std::vector<double>();
            for (const auto& [type, roundings] : by_type) {
                const GgmlType written = written_type(type, t.n_per_row());
                bool needed = false;
                for (const Rounding r : roundings) needed = needed || applies[{type, r}];
                if (!needed) continue;
                proxy[{type, base}] +=
                    rounding_proxy_error(t, original, written, base, in.imatrix, in.gptq, hessian);
                for (const Rounding r : roundings)
                    if (applies[{type, r}])
                        proxy[{type, r}] += rounding_proxy_error(t, original, written, r,
                                                                 in.imatrix, in.gptq, hessian);
            }
        }
        for (const auto& [type, roundings] : by_type)
            for (const Rounding r : roundings) {
                RoundingDecision d;
                d.applies = applies[{type, r}];
                d.proxy_base = proxy[{type, base}];
                d.proxy = d.applies ? proxy[{type, r}] : 0.0;
                out[{unit, rounded_type_name(type, r)}] = d;
            }
    }
    return out;
}

void choose_roundings(RoundingDecisions& decisions,
                      const std::map<std::pair<std::string, std::string>, double>& base_kld,
                      size_t n_base_items, const RoundingChoiceRule& rule) {
    // Per (unit, bare type): the applicable alternative with the least proxy ratio.
    std::map<std::pair<std::string, std::string>, std::pair<double, RoundingDecisions::key_type>>
        best;
    for (auto& [key, d] : decisions) {
        d.evaluate = false;
        if (!d.applies || !(d.proxy_base > 0)) continue;
        const double ratio = d.proxy / d.proxy_base;
        const std::pair<std::string, std::string> base_key{
            key.first, ggml_type_display_name(parse_rounded_type(key.second)->first)};
        const auto it = best.find(base_key);
        if (it == best.end() || ratio < it->second.first) best[base_key] = {ratio, key};
    }
    std::vector<std::pair<double, RoundingDecisions::key_type>> candidates;
    for (const auto& [base_key, b] : best) {
        const auto kld = base_kld.find(base_key);
        const double saved = 1.0 + rule.margin - b.first;
        if (kld == base_kld.end() || saved <= 0) continue;
        candidates.push_back({std::max(kld->second, 0.0) * saved, b.second});
    }
    std::sort(candidates.begin(), candidates.end(), [](const auto& a, const auto& b) {
        return a.first > b.first || (a.first == b.first && a.second < b.second);
    });
    const auto n = std::min(candidates.size(),
                            static_cast<size_t>(rule.share * static_cast<double>(n_base_items)));
    for (size_t i = 0; i < n; ++i) decisions[candidates[i].second].evaluate = true;
}

json rounding_choice_json(const RoundingDecisions& d, const RoundingChoiceRule& rule,
                          double proxy_seconds, double hessian_seconds) {
    json items = json::array();
    for (const auto& [key, v] : d)
        items.push_back({{"unit", key.first},
                         {"type", key.second},
                         {"proxy_base", v.proxy_base},
                         {"proxy", v.proxy},
                         {"applies", v.applies},
                         {"evaluate", v.evaluate}});
    return {{"margin", rule.margin},
            {"share", rule.share},
            {"proxy_seconds", proxy_seconds},
            {"hessian_seconds", hessian_seconds},
            {"items", items}};
}

RoundingDecisions rounding_decisions_from_json(const json& j) {
    RoundingDecisions d;
    for (const auto& i : j.at("items"))
        d[{i.at("unit").get<std::string>(), i.at("type").get<std::string>()}] = {
            i.at("proxy_base").get<double>(), i.at("proxy").get<double>(),
            i.at("applies").get<bool>(), i.at("evaluate").get<bool>()};
    return d;
}

std::optional<json> rounding_cost_json(const jobs::Store& store, int64_t job_id) {
    const auto choice = store.get_artifact(job_id, "rounding_choice");
    if (!choice) return std::nullopt;
    const json c = json::parse(choice->data);
    double base = 0, extra_items = 0;
    if (const auto ref = store.get_artifact(job_id, "reference"))
        base += json::parse(ref->data).value("seconds", 0.0);
    int64_t n_base = 0, n_alt = 0, n_evaluated = 0;
    for (const auto& m : store.measurements(job_id, "", "seconds")) {
        const auto rt = parse_rounded_type(m.type);
        if (rt && rt->second) {
            extra_items += m.value;
            ++n_alt;
        } else {
            base += m.value;
            ++n_base;
        }
    }
    for (const auto& m : store.measurements(job_id, "", metric::rounding_measured))
        n_evaluated += m.value > 0 ? 1 : 0;
    // Per alternative rounding: evaluated items, and those below their base item's ΔKLD.
    std::map<std::pair<std::string, std::string>, double> kld;
    for (const auto& m : store.measurements(job_id, "", metric::kld_mean))
        kld[{m.unit, m.type}] = m.value;
    json wins = json::object();
    for (const auto& [key, value] : kld) {
        const auto rt = parse_rounded_type(key.second);
        if (!rt || !rt->second) continue;
        const auto base_item = kld.find({key.first, ggml_type_display_name(rt->first)});
        if (base_item == kld.end()) continue;
        json& w = wins[rounding_name(*rt->second)];
        if (w.is_null()) w = {{"evaluated", 0}, {"better", 0}};
        w["evaluated"] = w["evaluated"].get<int64_t>() + 1;
        if (value < base_item->second) w["better"] = w["better"].get<int64_t>() + 1;
    }
    const double extra =
        extra_items + c.value("proxy_seconds", 0.0) + c.value("hessian_seconds", 0.0);
    return json{{"base_seconds", base},
                {"base_items", n_base},
                {"alternative_items", n_alt},
                {"evaluated_alternatives", n_evaluated},
                {"alternative_item_seconds", extra_items},
                {"proxy_seconds", c.value("proxy_seconds", 0.0)},
                {"hessian_seconds", c.value("hessian_seconds", 0.0)},
                {"extra_seconds", extra},
                {"extra_ratio", base > 0 ? extra / base : 0.0},
                {"wins", wins}};
}

std::string rounding_cost_summary(const jobs::Store& store, int64_t job_id) {
    const auto c = rounding_cost_json(store, job_id);
    if (!c) return "";
    std::string wins;
    for (const auto& [rounding, w] : c->at("wins").items())
        wins += fmt::format(
            "rounding choice: {} measured below the base rounding in {} of {} evaluated items{}\n",
            rounding, w.at("better").get<int64_t>(), w.at("evaluated").get<int64_t>(),
            w.at("better") == w.at("evaluated")
                ? " (everywhere it was tried: the global --gptq or --imatrix switch may serve "
                  "as well)"
                : "");
    return wins +
           fmt::format(
               "rounding choice: {} of {} alternative items evaluated (the proxy said they can "
               "win); "
               "extra cost {:.1f} s (Hessians {:.1f} s, proxies {:.1f} s, items {:.1f} s) = {:.2f} "
               "× "
               "the base sweep's {:.1f} s ({} items and the reference pass)\n",
               c->at("evaluated_alternatives").get<int64_t>(),
               c->at("alternative_items").get<int64_t>(), c->at("extra_seconds").get<double>(),
               c->at("hessian_seconds").get<double>(), c->at("proxy_seconds").get<double>(),
               c->at("alternative_item_seconds").get<double>(), c->at("extra_ratio").get<double>(),
               c->at("base_seconds").get<double>(), c->at("base_items").get<int64_t>());
}

}  // namespace quantlens
