// `quantlens weight-error MODEL [--imatrix F] [--types LIST] [--json|--csv]`: the fast
// proxy of quantization damage, every quantizable tensor × every requested type, with the
// metrics of analysis/measure/weight_metrics.h. Fallback types and skipped pairs are printed by
// tensor name (on stderr for --json/--csv, so stdout stays machine-readable).
#include <cmath>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "analysis/sweep/weight_error_sweep.h"
#include "cli/command.h"
#include "core/progress.h"
#include "formats/imatrix.h"
#include "model/imatrix_coverage.h"
#include "model/model.h"
#include "quant/quant.h"

namespace quantlens::cli {
namespace {

struct WeightErrorOptions {
    std::string model;
    std::string imatrix;
    std::string types;
    bool json = false;
    bool csv = false;
};

// JSON has no infinity: a perfect reconstruction's SNR is written as null.
nlohmann::json num(double v) {
    return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json();
}

nlohmann::json error_json(const WeightError& e) {
    nlohmann::json j = {{"rmse", num(e.rmse)},         {"max_abs", num(e.max_abs)},
                        {"mean_abs", num(e.mean_abs)}, {"rel_frobenius", num(e.rel_frobenius)},
                        {"cosine", num(e.cosine)},     {"snr_db", num(e.snr_db)}};
    if (e.has_imatrix) {
        j["imat_sq_err"] = num(e.imat_sq_err);
        j["imat_rel_err"] = num(e.imat_rel_err);
    }
    return j;
}

void print_json(const WeightErrorOptions& o, const WeightErrorReport& r) {
    nlohmann::json out;
    out["model"] = o.model;
    out["imatrix"] = o.imatrix.empty() ? nlohmann::json() : nlohmann::json(o.imatrix);
    for (GgmlType t : r.types) out["types"].push_back(ggml_type_display_name(t));
    out["results"] = nlohmann::json::array();
    for (const auto& row : r.rows) {
        nlohmann::json j = {{"tensor", row.tensor},
                            {"type", ggml_type_display_name(row.requested)},
                            {"used_type", ggml_type_display_name(row.used)},
                            {"n_params", row.n_params},
                            {"bytes", row.bytes}};
        j.update(error_json(row.error));
        out["results"].push_back(j);
    }
    for (const auto& t : r.totals) {
        nlohmann::json j = {{"type", ggml_type_display_name(t.type)},
                            {"n_params", t.n_params},
                            {"bytes", t.bytes},
                            {"bpw", t.bpw},
                            {"fallbacks", t.fallbacks}};
        j.update(error_json(t.error));
        out["totals"].push_back(j);
    }
    out["skipped"] = r.skipped;
    fmt::print("{}\n", out.dump(1));
}

void print_csv(const WeightErrorReport& r) {
    fmt::print(
        "tensor,type,used_type,n_params,bytes,rmse,max_abs,mean_abs,rel_frobenius,cosine,snr_db,"
        "imat_sq_err,imat_rel_err\n");
    for (const auto& row : r.rows) {
        const WeightError& e = row.error;
        fmt::print("{},{},{},{},{},{:.9g},{:.9g},{:.9g},{:.9g},{:.9g},{:.9g},{},{}\n", row.tensor,
                   ggml_type_display_name(row.requested), ggml_type_display_name(row.used),
                   row.n_params, row.bytes, e.rmse, e.max_abs, e.mean_abs, e.rel_frobenius,
                   e.cosine, e.snr_db, e.has_imatrix ? fmt::format("{:.9g}", e.imat_sq_err) : "",
                   e.has_imatrix ? fmt::format("{:.9g}", e.imat_rel_err) : "");
    }
}

void print_table(const WeightErrorReport& r) {
    bool imat = false;  // tensors without an imatrix entry (embeddings) have no imat metrics
    for (const auto& row : r.rows) imat = imat || row.error.has_imatrix;
    auto imat_cell = [imat](const WeightError& e) -> std::string {
        if (!imat) return "";
        return e.has_imatrix ? fmt::format("  {:>8.4g}", e.imat_rel_err)
                             : fmt::format("  {:>8}", "-");
    };
    fmt::print("{:<28} {:<8} {:<8} {:>10} {:>10} {:>10} {:>9} {:>8}{}\n", "tensor", "type", "used",
               "rmse", "max_abs", "rel_frob", "cosine", "snr_db", imat ? "  imat_rel" : "");
    for (const auto& row : r.rows) {
        const WeightError& e = row.error;
        fmt::print("{:<28} {:<8} {:<8} {:>10.4g} {:>10.4g} {:>10.4g} {:>9.6f} {:>8.2f}{}\n",
                   row.tensor, ggml_type_display_name(row.requested),
                   ggml_type_display_name(row.used), e.rmse, e.max_abs, e.rel_frobenius, e.cosine,
                   e.snr_db, imat_cell(e));
    }
    fmt::print("\nTotals per type\n{:<8} {:>12} {:>7} {:>10} {:>10} {:>9} {:>8}{}  fallbacks\n",
               "type", "bytes", "bpw", "rmse", "rel_frob", "cosine", "snr_db",
               imat ? "  imat_rel" : "");
    for (const auto& t : r.totals) {
        const WeightError& e = t.error;
        fmt::print("{:<8} {:>12} {:>7.3f} {:>10.4g} {:>10.4g} {:>9.6f} {:>8.2f}{}  {}\n",
                   ggml_type_display_name(t.type), t.bytes, t.bpw, e.rmse, e.rel_frobenius,
                   e.cosine, e.snr_db, imat_cell(e), t.fallbacks.size());
    }
}

int run_weight_error_cmd(const WeightErrorOptions& o) {
    const auto model = Model::open(o.model);
    std::optional<Imatrix> imatrix;
    if (!o.imatrix.empty()) imatrix = load_imatrix_for(*model, o.imatrix);
    const std::vector<GgmlType> types =
        o.types.empty() ? quantizable_types() : parse_type_list(o.types);

    int64_t n_quantizable = 0;
    for (const auto& t : model->tensors()) n_quantizable += t.quantizable;
    Progress bar("weight-error", n_quantizable * static_cast<int64_t>(types.size()), "pairs");
    const WeightErrorReport r = run_weight_error(*model, types, imatrix ? &*imatrix : nullptr,
                                                 [&](int64_t done, int64_t) { bar.set(done); });
    bar.finish();

    if (o.json) {
        print_json(o, r);
    } else if (o.csv) {
        print_csv(r);
    } else {
        print_table(r);
    }
    // Loud about every substitution and every pair not measured.
    std::FILE* note = (o.json || o.csv) ? stderr : stdout;
    for (const auto& t : r.totals)
        for (const auto& f : t.fallbacks) fmt::print(note, "fallback: {}\n", f);
    for (const auto& s : r.skipped) fmt::print(note, "skipped: {}\n", s);
    return 0;
}

}  // namespace
}  // namespace quantlens::cli

namespace quantlens::cli {
namespace {

// Registered by hand rather than with QL_COMMAND: the command name has a dash.
CommandRunner setup_weight_error(CLI::App& cmd) {
    auto o = std::make_shared<quantlens::cli::WeightErrorOptions>();
    cmd.add_option("MODEL", o->model, "Hugging Face directory or GGUF file")->required();
    cmd.add_option("--imatrix", o->imatrix, "llama.cpp imatrix (.dat or GGUF) for importance");
    cmd.add_option("--types", o->types,
                   "Comma-separated types, e.g. Q4_K,Q6_K,IQ4_XS, or 'all' (default: all "
                   "implemented)");
    auto* json = cmd.add_flag("--json", o->json, "JSON on stdout");
    cmd.add_flag("--csv", o->csv, "CSV on stdout")->excludes(json);
    return [o] { return quantlens::cli::run_weight_error_cmd(*o); };
}

const CommandRegistrar weight_error_registrar(
    "weight-error", "Weight-level quantization error of every tensor under every type",
    &setup_weight_error);

}  // namespace
}  // namespace quantlens::cli
