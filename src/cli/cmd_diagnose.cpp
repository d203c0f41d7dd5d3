// `quantlens diagnose MODEL [--calib JOB_OR_TEXT] [--type T] [--k 3] [--bits 2,3,4]
// [--group 128] [--smooth-alpha 0.5] [--chunks 4] [--samples 256] [--store S] [--job J]
// [--json]`: weight diagnostics of every quantizable tensor (analysis/studies/weight_diagnostics.h)
// and, with calibration activations, the AWQ diagnostics (analysis/studies/awq.h): importance,
// per-family scale-search table, SmoothQuant scales, group-size and clipping studies.
// --calib takes a calibration text, or the id of a calibrate job in --store (its text is
// used). Results go to the artifact "diagnostics" of --job (or of the calibrate job).
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "analysis/studies/awq.h"
#include "analysis/studies/calibrate.h"
#include "analysis/studies/weight_diagnostics.h"
#include "cli/command.h"
#include "core/error.h"
#include "engine/engine.h"
#include "jobs/store.h"
#include "model/model.h"
#include "quant/quant.h"

namespace quantlens::cli {
namespace {

struct DiagnoseCliOptions {
    std::string model, calib, type, bits = "2,3,4", store;
    int64_t job = 0, chunks = 4, samples = 256, group = 128, ctx = 512;
    double k = 3, smooth_alpha = 0.5;
    bool json = false;
};

bool is_number(const std::string& s) {
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

std::vector<int> parse_bits(const std::string& list) {
    std::vector<int> out;
    for (const std::string& t : split_commas(list)) {
        QL_CHECK(is_number(t) && std::stoi(t) >= 1 && std::stoi(t) <= 8,
                 "--bits: '{}' is not a bit width from 1 to 8", t);
        out.push_back(std::stoi(t));
    }
    return out;
}

void print_weights(const std::vector<WeightDiagnostics>& ws) {
    fmt::print("{:<28} {:>9} {:>8} {:>8} {:>8} {:>7} {:>6}", "weight", "sigma", "kurt", "out%",
               "maxσ", "range", "waste");
    if (!ws.empty() && ws[0].type)
        for (const auto& g : ws[0].groups)
            fmt::print("  g{:<3} mean/p99/worst RMSE    ", g.group_size);
    fmt::print("\n");
    for (const WeightDiagnostics& d : ws) {
        fmt::print("{:<28} {:>9.3g} {:>8.2f} {:>8.3f} {:>8.1f} {:>7.2f} {:>6.3f}", d.name, d.sigma,
                   d.excess_kurtosis, 100 * d.outlier_frac, d.max_outlier_sigma, d.range_ratio,
                   d.quant_waste);
        for (const auto& g : d.groups)
            fmt::print("  {:.2e}/{:.2e}/{:.2e}", g.mean_rmse, g.p99_rmse, g.worst_rmse);
        fmt::print("\n");
    }
}

// The mean over the tensors of row i's weight RMSE and output error in one of their studies
// (group_study, clip_sweep).
template <typename Row>
std::pair<double, double> mean_errors(const std::vector<AwqTensor>& ts,
                                      std::vector<Row> AwqTensor::*study, size_t i) {
    double rm = 0, oe = 0;
    for (const auto& t : ts) {
        rm += (t.*study)[i].rmse;
        oe += (t.*study)[i].out_err;
    }
    const auto n = static_cast<double>(ts.size());
    return {rm / n, oe / n};
}

void print_awq(const std::vector<AwqTensor>& ts, const std::vector<AwqFamilySummary>& fams,
               const std::vector<int>& bits) {
    fmt::print(
        "\nAWQ scale search (group-wise RTN; output error ||Wx - Ŵx|| / ||Wx|| on "
        "calibration inputs), mean per family\n");
    fmt::print("{:<8} {:>3} {:>9}", "family", "n", "top1%imp");
    for (int b : bits) fmt::print(" | {}-bit plain  scaled  reduct  α  ", b);
    fmt::print("\n");
    for (const AwqFamilySummary& f : fams) {
        fmt::print("{:<8} {:>3} {:>8.2f}%", f.family, f.n_tensors, 100 * f.top1_share);
        for (int b : bits)
            fmt::print(" | {:>11.4f} {:>7.4f} {:>6.1f}% {:>4.2f}", f.err_plain.at(b),
                       f.err_best.at(b), 100 * f.reduction.at(b), f.best_alpha.at(b));
        fmt::print("\n");
    }
    if (ts.empty()) return;
    fmt::print("\ngroup-size study and clip sweep at {} bits (output error, mean over tensors)\n",
               ts[0].group_study.empty() ? 0
                                         : static_cast<int>(ts[0].group_study[0].eff_bits -
                                                            32.0 / ts[0].group_study[0].group));
    for (size_t i = 0; i < ts[0].group_study.size(); ++i) {
        const auto [rm, oe] = mean_errors(ts, &AwqTensor::group_study, i);
        fmt::print("  group {:>4}: {:.3f} bits/weight, weight RMSE {:.3e}, output error {:.4f}\n",
                   ts[0].group_study[i].group, ts[0].group_study[i].eff_bits, rm, oe);
    }
    for (size_t i = 0; i < ts[0].clip_sweep.size(); ++i) {
        const auto [rm, oe] = mean_errors(ts, &AwqTensor::clip_sweep, i);
        fmt::print("  clip {:.2f}: weight RMSE {:.3e}, output error {:.4f}\n",
                   ts[0].clip_sweep[i].ratio, rm, oe);
    }
    fmt::print(
        "\nSmoothQuant (α from --smooth-alpha): activation max/mean channel-max ratio "
        "before → after\n");
    for (const auto& t : ts)
        if (t.family == "q" || t.family == "gate" || t.family == "down" || t.family == "o")
            fmt::print(
                "  {:<28} act {:>6.2f} → {:>5.2f}  weight {:>5.2f} → {:>5.2f}  s in "
                "[{:.3g}, {:.3g}]\n",
                t.name, t.sq_act_ratio_before, t.sq_act_ratio_after, t.sq_w_ratio_before,
                t.sq_w_ratio_after, t.sq_scale_min, t.sq_scale_max);
}

int run_diagnose(const DiagnoseCliOptions& o) {
    const std::unique_ptr<Model> model = Model::open(o.model);
    std::optional<GgmlType> type;
    if (!o.type.empty()) {
        type = ggml_type_from_name(o.type);
        QL_CHECK(type.has_value(), "--type: unknown type '{}'", o.type);
    }
    std::optional<jobs::Store> store;
    if (!o.store.empty()) store.emplace(jobs::resolve_store_path(o.store));
    int64_t artifact_job = o.job;

    // Calibration activations (sampled rows per linear input) when asked for.
    Engine engine(*model);
    ActivationCollector collector(model->config().n_experts);
    std::optional<CalibrationResult> calib;
    if (!o.calib.empty()) {
        std::string text = o.calib;
        int64_t ctx = o.ctx;
        if (is_number(o.calib) && !std::filesystem::exists(o.calib)) {
            QL_CHECK(store.has_value(), "--calib {}: a job id needs --store", o.calib);
            const jobs::Job job = store->get_job(std::stoll(o.calib));
            QL_CHECK(job.kind == jobs::JobKind::calibrate, "--calib {}: job {} is a {} job",
                     o.calib, job.id, jobs::kind_name(job.kind));
            const auto params = nlohmann::json::parse(job.params);
            text = params.at("text");
            ctx = params.value("ctx", ctx);
            if (artifact_job == 0) artifact_job = job.id;
        }
        CalibrateOptions co;
        co.n_ctx = ctx;
        co.max_chunks = o.chunks;
        co.capture_rows = o.samples;
        co.capture_stride = std::max<int64_t>(1, o.chunks * ctx / std::max<int64_t>(1, o.samples));
        calib = calibrate_text(engine, text, co, {}, &collector);
    }
    auto stats_of = [&](const std::string& name) -> const TensorActivationStats* {
        if (!calib) return nullptr;
        for (const auto& s : calib->tensors)
            if (s.name == name) return &s;
        return nullptr;
    };

    std::vector<WeightDiagnostics> weights;
    for (const TensorInfo& t : model->tensors()) {
        if (!t.quantizable) continue;
        WeightDiagOptions wo;
        wo.k = o.k;
        if (type && type_fits_row(fallback_type(*type, t.n_per_row()), t.n_per_row()))
            wo.type = type;
        const TensorActivationStats* s = stats_of(t.name);
        if (s && s->n_mat == 1) wo.importance = s->importance.data();
        const std::vector<float>& w = engine.original(t.name);
        weights.push_back(diagnose_weight(t.name, w.data(), t.n_rows(), t.n_per_row(), wo));
    }

    std::vector<AwqTensor> awq;
    AwqOptions ao;
    ao.bits = parse_bits(o.bits);
    ao.group = o.group;
    ao.smooth_alpha = o.smooth_alpha;
    if (calib) {
        for (const TensorActivationStats& s : calib->tensors) {
            const TensorInfo& t = model->get(s.name);
            const std::vector<float>& w = engine.original(s.name);
            const int64_t rows_per_mat = t.n_rows() / s.n_mat;
            for (int64_t m = 0; m < s.n_mat; ++m) {
                const std::vector<float>& x = collector.captured(s.name, s.n_mat > 1 ? int(m) : -1);
                const int64_t n = static_cast<int64_t>(x.size()) / s.n_cols;
                if (n == 0) continue;
                const std::string name = s.n_mat > 1 ? fmt::format("{}[{}]", s.name, m) : s.name;
                awq.push_back(awq_diagnose(name, w.data() + m * rows_per_mat * s.n_cols,
                                           rows_per_mat, s.n_cols, x.data(), n, s.mean_abs.data(),
                                           s.max_abs.data(), ao));
            }
        }
    }
    const std::vector<AwqFamilySummary> fams = summarize_families(awq);

    nlohmann::json doc;
    doc["model"] = o.model;
    doc["k"] = o.k;
    doc["type"] = o.type;
    doc["weights"] = nlohmann::json::array();
    for (const auto& d : weights) doc["weights"].push_back(to_json(d));
    if (calib) {
        doc["calib"] = {{"text", calib->dataset},
                        {"n_chunks", calib->n_chunks},
                        {"n_tokens", calib->n_tokens},
                        {"samples", o.samples}};
        doc["awq"] = nlohmann::json::array();
        for (const auto& t : awq) doc["awq"].push_back(to_json(t));
        doc["awq_families"] = nlohmann::json::array();
        for (const auto& f : fams) doc["awq_families"].push_back(to_json(f));
    }
    if (store && artifact_job > 0) {
        store->put_artifact(artifact_job, {"diagnostics", true, doc.dump()});
        // The report draws weight histograms from the calibration artifact's tensors.
        if (auto cal = store->get_artifact(artifact_job, "calibration")) {
            auto j = nlohmann::json::parse(cal->data);
            for (auto& t : j["tensors"])
                for (const auto& d : doc["weights"])
                    if (d["name"] == t["name"]) {
                        // Keeps what calibrate stored beside it (n, share beyond 3σ).
                        if (!t["weight_hist"].is_object())
                            t["weight_hist"] = nlohmann::json::object();
                        t["weight_hist"].update(d["weight_hist"]);
                    }
            store->put_artifact(artifact_job, {"calibration", true, j.dump()});
        }
    }
    if (o.json) {
        fmt::print("{}\n", doc.dump());
        return 0;
    }
    print_weights(weights);
    if (calib) print_awq(awq, fams, ao.bits);
    if (store && artifact_job > 0)
        fmt::print("\nstored as artifact 'diagnostics' of job {}\n", artifact_job);
    return 0;
}

}  // namespace

QL_COMMAND(diagnose, DiagnoseCliOptions,
           "Weight outliers, per-group error maps and AWQ/SmoothQuant diagnostics") {
    cmd.add_option("MODEL", o->model, "Hugging Face directory or .gguf file")->required();
    cmd.add_option("--calib", o->calib,
                   "Calibration text, or a calibrate job id (with --store), for the AWQ studies");
    cmd.add_option("--type", o->type, "Type for the per-group error maps (e.g. Q4_K)");
    cmd.add_option("--k", o->k, "Outlier threshold in σ")->capture_default_str();
    cmd.add_option("--bits", o->bits, "AWQ bit widths")->capture_default_str();
    cmd.add_option("--group", o->group, "AWQ group size")->capture_default_str();
    cmd.add_option("--smooth-alpha", o->smooth_alpha, "SmoothQuant α")->capture_default_str();
    cmd.add_option("--chunks", o->chunks, "Calibration chunks to run")->capture_default_str();
    cmd.add_option("--ctx", o->ctx, "Calibration chunk length")->capture_default_str();
    cmd.add_option("--samples", o->samples, "Input rows sampled per tensor for output errors")
        ->capture_default_str();
    cmd.add_option("--store", o->store, "Job store (for --calib JOB and --job)");
    cmd.add_option("--job", o->job, "Store the results as artifact 'diagnostics' of this job");
    cmd.add_flag("--json", o->json, "Print one JSON object");
    return [o] { return quantlens::cli::run_diagnose(*o); };
}

}  // namespace quantlens::cli
