#include "analysis/sweep/placement.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include <fmt/format.h>

#include "core/error.h"
#include "core/ggml_type.h"
#include "jobs/metric_names.h"
#include "jobs/store.h"
#include "model/model.h"
#include "model/names.h"

namespace quantlens {
namespace {

using json = nlohmann::json;

// The token mixers: attention, and the Gated DeltaNet's projections in hybrid models.
bool is_attention(TensorRole r) {
    return is_attention_projection(r) || r == TensorRole::AttnQKV || r == TensorRole::AttnGate ||
           r == TensorRole::SsmOut || r == TensorRole::SsmBetaAlpha || r == TensorRole::SsmBeta ||
           r == TensorRole::SsmAlpha;
}

// The MLP: dense, or the routers with the routed and shared experts.
bool is_ffn(TensorRole r) {
    return is_dense_mlp(r) || is_routed_experts(r) || is_shared_expert(r) ||
           r == TensorRole::Router || r == TensorRole::SharedRouter;
}

// The quantizable tensors of `model` that `pick` selects, in the model's order.
template <class Pick>
SweepUnit make_unit(const Model& model, std::string name, Pick pick) {
    SweepUnit u;
    u.name = std::move(name);
    u.role = "placement";
    for (const auto& t : model.tensors())
        if (t.quantizable && pick(t)) {
            u.tensors.push_back(t.name);
            u.n_params += t.n_elements();
        }
    return u;
}

SweepUnit layer_unit(const Model& model, std::string name, int from, int count, int step = 1) {
    return make_unit(model, std::move(name), [&](const TensorInfo& t) {
        return t.layer >= from && t.layer < from + count * step && (t.layer - from) % step == 0;
    });
}

}  // namespace

std::vector<int> default_placement_n(int n_layers) {
    std::vector<int> out;
    for (int n : {1, n_layers / 8, n_layers / 4})
        if (n >= 1 && n < n_layers && std::find(out.begin(), out.end(), n) == out.end())
            out.push_back(n);
    return out;
}

std::vector<SweepUnit> build_placement_units(const Model& model, const std::vector<int>& ns) {
    const int L = static_cast<int>(model.config().n_layers);
    QL_CHECK(L >= 2, "{}: --placement needs a model with at least 2 layers, this one has {}",
             model.path(), L);
    QL_CHECK(!ns.empty(), "--placement-n: no layer counts given");
    std::vector<SweepUnit> units;
    units.push_back({kPlacementBaseUnit, -1, "placement", {}, 0});
    std::set<int> seen;
    for (int n : ns) {
        QL_CHECK(n >= 1 && n < L, "--placement-n {}: must be between 1 and {} ({} has {} layers)",
                 n, L - 1, model.path(), L);
        if (!seen.insert(n).second) continue;
        units.push_back(layer_unit(model, fmt::format("first-{}", n), 0, n));
        units.push_back(layer_unit(model, fmt::format("last-{}", n), L - n, n));
        units.push_back(layer_unit(model, fmt::format("middle-{}", n), (L - n) / 2, n));
    }
    units.push_back(layer_unit(model, "alternate", 0, (L + 1) / 2, 2));
    units.push_back(
        make_unit(model, "attn-only", [](const TensorInfo& t) { return is_attention(t.role); }));
    units.push_back(
        make_unit(model, "ffn-only", [](const TensorInfo& t) { return is_ffn(t.role); }));
    // A tied head has no output.weight: token_embd is then the matrix the head multiplies by.
    const TensorInfo* head = model.find("output.weight");
    const std::string head_name =
        head && head->quantizable ? "output.weight" : std::string("token_embd.weight");
    units.push_back(
        make_unit(model, "output", [&](const TensorInfo& t) { return t.name == head_name; }));
    if (head_name != "token_embd.weight")
        units.push_back(make_unit(
            model, "embed", [](const TensorInfo& t) { return t.name == "token_embd.weight"; }));
    for (const auto& u : units)
        QL_CHECK(u.name == kPlacementBaseUnit || !u.tensors.empty(),
                 "{}: placement variant '{}' selects no quantizable tensor", model.path(), u.name);
    return units;
}

std::vector<PlacementRow> placement_rows(jobs::Store& store, int64_t id, double* ppl_base) {
    const auto info_art = store.get_artifact(id, "model_info");
    QL_CHECK(info_art.has_value(), "job {}: no model_info artifact", id);
    const json info = json::parse(info_art->data);
    const double fixed = info.at("unquantized_bytes").get<double>();
    const double params = info.at("n_params").get<double>();

    std::map<std::pair<std::string, std::string>, std::map<std::string, double>> by;
    for (const auto& m : store.measurements(id)) by[{m.unit, m.type}][m.metric] = m.value;
    std::vector<PlacementRow> rows;
    for (auto& [key, m] : by) {
        if (!m.count(metric::kld_mean) || !m.count(metric::bytes)) continue;
        PlacementRow r;
        r.variant = key.first;
        r.raised_type = key.second;
        r.model_bytes = m[metric::bytes] + fixed;
        r.bpw = bits_per_weight(r.model_bytes, params);
        r.kld_mean = m[metric::kld_mean];
        r.kld_p99 = m.count(metric::kld_p99) ? m[metric::kld_p99] : std::nan("");
        r.kld_p999 = m.count(metric::kld_p999) ? m[metric::kld_p999] : std::nan("");
        r.ppl = m.count(metric::ppl) ? m[metric::ppl] : std::nan("");
        r.ppl_delta = m[metric::ppl_delta];
        r.top1_agree = m[metric::top1_agree];
        if (ppl_base && m.count(metric::ppl_base)) *ppl_base = m[metric::ppl_base];
        rows.push_back(r);
    }
    std::sort(rows.begin(), rows.end(), [](const PlacementRow& a, const PlacementRow& b) {
        return a.model_bytes != b.model_bytes ? a.model_bytes < b.model_bytes
                                              : a.kld_mean < b.kld_mean;
    });
    double best =
        INFINITY;  // rows are by size, so a row is on the frontier iff it beats all before
    for (auto& r : rows) {
        r.pareto = r.kld_mean < best;
        best = std::min(best, r.kld_mean);
    }
    return rows;
}

std::string placement_summary(jobs::Store& store, int64_t id) {
    const SweepOptions o = SweepOptions::from_json(json::parse(store.get_job(id).params));
    const std::string base = o.base_type ? ggml_type_display_name(*o.base_type) : "?";
    double ppl_fp = std::nan("");
    const auto rows = placement_rows(store, id, &ppl_fp);
    const PlacementRow* base_row = nullptr;
    for (const auto& r : rows)
        if (r.variant == kPlacementBaseUnit) base_row = &r;

    std::string out = fmt::format(
        "placement study, base type {} (token_embd and output at {} unless raised); "
        "full-precision PPL {:.4f}\n",
        base, base, ppl_fp);
    out += fmt::format("{:<12} {:<7} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9} {:>7} {:>12}  {}\n",
                       "variant", "raised", "size MB", "bpw", "KLD mean", "KLD p99", "p99.9", "PPL",
                       "ΔPPL", "top-1", "ΔKLD/+MB", "pareto");
    for (const auto& r : rows) {
        // KLD removed per extra MB over the uniform base model: what the placement buys.
        std::string gain = "";
        if (base_row && &r != base_row && r.model_bytes > base_row->model_bytes)
            gain = fmt::format("{:.6f}", (base_row->kld_mean - r.kld_mean) /
                                             ((r.model_bytes - base_row->model_bytes) / 1e6));
        out += fmt::format(
            "{:<12} {:<7} {:>9.4f} {:>7.3f} {:>10.6f} {:>9.5f} {:>9.5f} {:>9.4f} {:>+9.4f} "
            "{:>6.2f}% {:>12}  {}\n",
            r.variant, r.raised_type, r.model_bytes / 1e6, r.bpw, r.kld_mean, r.kld_p99, r.kld_p999,
            r.ppl, r.ppl_delta, 100.0 * r.top1_agree, gain, r.pareto ? "*" : "");
    }
    return out;
}

namespace {
json number_or_null(double v) {
    return std::isfinite(v) ? json(v) : json(nullptr);
}
}  // namespace

json placement_json(jobs::Store& store, int64_t id) {
    json out = json::array();
    for (const auto& r : placement_rows(store, id))
        out.push_back({{"variant", r.variant},
                       {"raised_type", r.raised_type},
                       {"model_bytes", r.model_bytes},
                       {"bpw", r.bpw},
                       {"kld_mean", r.kld_mean},
                       {"kld_p99", number_or_null(r.kld_p99)},
                       {"kld_p999", number_or_null(r.kld_p999)},
                       {"ppl", r.ppl},
                       {"ppl_delta", r.ppl_delta},
                       {"top1_agree", r.top1_agree},
                       {"pareto", r.pareto}});
    return out;
}

}  // namespace quantlens
