// compare: reading a compare job back from the store, and its table and JSON forms
// (the measurement itself is in compare.cpp).
#include <algorithm>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "analysis/studies/compare.h"
#include "core/error.h"
#include "jobs/store.h"

namespace quantlens {
namespace {

using json = nlohmann::json;
constexpr const char* kModelUnit = "(model)";
constexpr const char* kQuantType = "quant";

double get(const std::map<std::string, double>& m, const char* key, double fallback = 0) {
    auto it = m.find(key);
    return it == m.end() ? fallback : it->second;
}

}  // namespace

CompareResult load_compare_result(const jobs::Store& store, int64_t id) {
    const jobs::Job job = store.get_job(id);
    QL_CHECK(job.kind == jobs::JobKind::compare, "{}: job {} is a {} job, not a compare",
             store.path(), id, jobs::kind_name(job.kind));
    CompareResult r;
    r.job_id = id;
    r.options = CompareOptions::from_json(json::parse(job.params));
    std::map<std::string, std::pair<std::string, std::map<std::string, double>>> cells;
    for (const jobs::Measurement& m : store.measurements(id)) {
        auto& c = cells[m.unit];
        c.first = m.type;
        c.second[m.metric] = m.value;
    }
    for (const jobs::Unit& u : store.units(id)) {
        auto it = cells.find(u.name);
        if (u.name == kModelUnit) {
            if (it == cells.end()) continue;
            const auto& m = it->second.second;
            KldStats& k = r.kld;
            k.count = static_cast<int64_t>(get(m, "n_scored"));
            k.kld_mean = get(m, "kld_mean"), k.kld_err = get(m, "kld_err");
            k.kld_median = get(m, "kld_median"), k.kld_p90 = get(m, "kld_p90");
            k.kld_p99 = get(m, "kld_p99"), k.kld_p999 = get(m, "kld_p999");
            k.kld_max = get(m, "kld_max");
            k.same_top = get(m, "top1_agree"), k.same_top_err = get(m, "top1_agree_err");
            k.rms_dp = get(m, "rms_dp"), k.rms_dp_err = get(m, "rms_dp_err");
            k.ppl = get(m, "ppl"), k.ppl_err = get(m, "ppl_err");
            k.ppl_base = get(m, "ppl_base"), k.ppl_base_err = get(m, "ppl_base_err");
            k.ln_ppl_ratio = get(m, "ln_ppl_ratio"),
            k.ln_ppl_ratio_err = get(m, "ln_ppl_ratio_err");
            r.n_scored = k.count;
            r.weights_bpw = get(m, "weights_bpw");
        } else if (u.role == "layer") {
            LayerComparison l;
            l.name = u.name;
            l.layer = u.layer;
            if (it != cells.end()) {
                const auto& m = it->second.second;
                l.has_act = m.count("act_mse") != 0;
                l.act_mse = get(m, "act_mse"), l.act_cos = get(m, "act_cos", 1);
                l.has_attribution = m.count("kld_swapped") != 0;
                l.kld_all = get(m, "kld_all"), l.kld_swapped = get(m, "kld_swapped");
                l.kld_reduction = get(m, "kld_reduction"), l.kld_share = get(m, "kld_share");
            }
            r.layers.push_back(l);
        } else if (it != cells.end()) {
            const auto& m = it->second.second;
            TensorComparison t;
            t.name = u.name, t.role = u.role, t.layer = u.layer, t.type = it->second.first;
            t.bpw = get(m, "bpw"), t.bytes = get(m, "bytes"), t.n_params = get(m, "n_params");
            t.w_rmse = get(m, "w_rmse"), t.w_max_abs = get(m, "w_max_abs");
            t.w_rel_fro = get(m, "w_rel_fro"), t.w_cos = get(m, "w_cos", 1);
            t.w_snr_db = get(m, "w_snr_db");
            r.tensors.push_back(t);
        }
    }
    return r;
}

std::vector<TensorComparison> largest_weight_errors(const CompareResult& r, size_t top) {
    std::vector<TensorComparison> v = r.tensors;
    std::stable_sort(v.begin(), v.end(),
                     [](const auto& a, const auto& b) { return a.w_rel_fro > b.w_rel_fro; });
    if (v.size() > top) v.resize(top);
    return v;
}

json compare_to_json(const CompareResult& r, size_t top) {
    json j;
    j["job"] = r.job_id;
    j["fp"] = r.options.fp;
    j["quant"] = r.options.quant;
    j["text"] = r.options.text;
    j["n_ctx"] = r.options.ctx;
    j["tokens_scored"] = r.n_scored;
    j["f16_base"] = r.options.f16_base;
    j["ggml_numerics"] = r.options.ggml_numerics;
    j["weights_bpw"] = r.weights_bpw;
    const KldStats& k = r.kld;
    j["kld"] = {{"mean", k.kld_mean}, {"err", k.kld_err}, {"median", k.kld_median},
                {"p90", k.kld_p90},   {"p99", k.kld_p99}, {"p99_9", k.kld_p999},
                {"max", k.kld_max}};
    j["same_top1_pct"] = 100 * k.same_top;
    j["rms_dp_pct"] = 100 * k.rms_dp;
    j["ppl"] = k.ppl;
    j["ppl_base"] = k.ppl_base;
    j["ppl_delta"] = k.ppl - k.ppl_base;
    j["ln_ppl_ratio"] = k.ln_ppl_ratio;
    json tensors = json::array();
    for (const auto& t : r.tensors)
        tensors.push_back({{"name", t.name},
                           {"layer", t.layer},
                           {"role", t.role},
                           {"type", t.type},
                           {"bpw", t.bpw},
                           {"bytes", t.bytes},
                           {"rmse", t.w_rmse},
                           {"max_abs", t.w_max_abs},
                           {"rel_fro", t.w_rel_fro},
                           {"cos", t.w_cos},
                           {"snr_db", t.w_snr_db}});
    j["tensors"] = tensors;
    json largest = json::array();
    for (const auto& t : largest_weight_errors(r, top)) largest.push_back(t.name);
    j["largest_weight_error"] = largest;
    json layers = json::array();
    for (const auto& l : r.layers) {
        json o = {{"name", l.name}, {"layer", l.layer}};
        if (l.has_act) o["act_mse"] = l.act_mse, o["act_cos"] = l.act_cos;
        if (l.has_attribution)
            o["kld_swapped"] = l.kld_swapped, o["kld_reduction"] = l.kld_reduction,
            o["kld_share"] = l.kld_share;
        layers.push_back(o);
    }
    j["layers"] = layers;
    return j;
}

std::string compare_table(const CompareResult& r, size_t top) {
    const KldStats& k = r.kld;
    std::string s =
        fmt::format("compare job {}: {} → {}\n", r.job_id, r.options.fp, r.options.quant);
    s += fmt::format("{} tokens scored (ctx {}), QUANT weights {:.3f} bpw{}{}\n", r.n_scored,
                     r.options.ctx, r.weights_bpw, r.options.f16_base ? ", FP as F16" : "",
                     r.options.ggml_numerics ? ", llama.cpp CPU numerics" : "");
    s += fmt::format("mean KLD {:.6f} ± {:.6f}   median {:.6f}   p99 {:.6f}   max {:.6f}\n",
                     k.kld_mean, k.kld_err, k.kld_median, k.kld_p99, k.kld_max);
    s += fmt::format("same top-1 {:.2f} %   RMS Δp {:.2f} %   PPL {:.3f} vs {:.3f} (Δ {:+.3f})\n\n",
                     100 * k.same_top, 100 * k.rms_dp, k.ppl, k.ppl_base, k.ppl - k.ppl_base);

    s += fmt::format("{:<28} {:<7} {:>6} {:>10} {:>9} {:>8} {:>8}\n", "tensor", "type", "bpw",
                     "rmse", "rel_fro", "cos", "snr dB");
    for (const auto& t : r.tensors)
        s += fmt::format("{:<28} {:<7} {:>6.2f} {:>10.3e} {:>9.5f} {:>8.5f} {:>8.2f}\n", t.name,
                         t.type, t.bpw, t.w_rmse, t.w_rel_fro, t.w_cos, t.w_snr_db);
    s += "\nlargest weight error (rel_fro):";
    for (const auto& t : largest_weight_errors(r, top))
        s += fmt::format(" {} ({} {:.4f})", t.name, t.type, t.w_rel_fro);
    s += "\n\n";

    s += fmt::format("{:<11} {:>11} {:>9} {:>12} {:>12} {:>7}\n", "layer", "act MSE", "act cos",
                     "KLD if FP", "ΔKLD", "share");
    for (const auto& l : r.layers) {
        std::string act = l.has_act ? fmt::format("{:>11.4e} {:>9.6f}", l.act_mse, l.act_cos)
                                    : fmt::format("{:>11} {:>9}", "-", "-");
        std::string attr = l.has_attribution
                               ? fmt::format("{:>12.6f} {:>12.6f} {:>6.1f}%", l.kld_swapped,
                                             l.kld_reduction, 100 * l.kld_share)
                               : fmt::format("{:>12} {:>12} {:>7}", "-", "-", "-");
        s += fmt::format("{:<11} {} {}\n", l.name, act, attr);
    }
    return s;
}

}  // namespace quantlens
