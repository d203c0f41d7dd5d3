// Weight diagnostics; definitions in weight_diagnostics.h.
#include "analysis/studies/weight_diagnostics.h"

#include <algorithm>
#include <cmath>

#include "analysis/measure/activation_stats.h"
#include "core/error.h"
#include "quant/quant.h"

namespace quantlens {
namespace {

GroupErrorSummary group_errors(const float* w, const float* q, int64_t R, int64_t C, int64_t g) {
    GroupErrorSummary s;
    s.group_size = g;
    const int64_t per_row = C / g;
    std::vector<double> rmse(static_cast<size_t>(R * per_row));
    for (int64_t r = 0; r < R; ++r)
        for (int64_t b = 0; b < per_row; ++b) {
            double e2 = 0;
            for (int64_t j = b * g; j < (b + 1) * g; ++j) {
                const double d = static_cast<double>(w[r * C + j]) - q[r * C + j];
                e2 += d * d;
            }
            const double v = std::sqrt(e2 / static_cast<double>(g));
            rmse[static_cast<size_t>(r * per_row + b)] = v;
            if (v > s.worst_rmse) {
                s.worst_rmse = v;
                s.worst_row = r;
                s.worst_col = b * g;
            }
        }
    s.n_groups = static_cast<int64_t>(rmse.size());
    double sum = 0;
    for (double v : rmse) sum += v;
    s.mean_rmse = s.n_groups ? sum / static_cast<double>(s.n_groups) : 0;
    if (!rmse.empty()) {
        const auto rank =
            static_cast<size_t>(std::ceil(0.99 * static_cast<double>(rmse.size()))) - 1;
        std::nth_element(rmse.begin(), rmse.begin() + static_cast<std::ptrdiff_t>(rank),
                         rmse.end());
        s.p99_rmse = rmse[rank];
    }
    return s;
}

}  // namespace

WeightDiagnostics diagnose_weight(const std::string& name, const float* w, int64_t n_rows,
                                  int64_t n_cols, const WeightDiagOptions& o) {
    QL_CHECK(n_rows > 0 && n_cols > 0, "tensor '{}': empty weight ({} x {})", name, n_rows, n_cols);
    QL_CHECK(o.k > 0, "tensor '{}': sigma threshold k = {} (expected > 0)", name, o.k);
    WeightDiagnostics d;
    d.name = name;
    d.n_rows = n_rows;
    d.n_cols = n_cols;
    d.k = o.k;
    const int64_t n = n_rows * n_cols;
    double s1 = 0, s2 = 0, s3 = 0, s4 = 0;
    float lo = w[0], hi = w[0];
    for (int64_t i = 0; i < n; ++i) {
        const double v = w[i], v2 = v * v;
        s1 += v;
        s2 += v2;
        s3 += v2 * v;
        s4 += v2 * v2;
        lo = std::min(lo, w[i]);
        hi = std::max(hi, w[i]);
    }
    const auto dn = static_cast<double>(n);
    d.mean = s1 / dn;
    d.sigma = std::sqrt(std::max(0.0, s2 / dn - d.mean * d.mean));
    d.excess_kurtosis = excess_kurtosis_from_sums(dn, s1, s2, s3, s4);
    d.max_abs = std::max(std::fabs(static_cast<double>(lo)), std::fabs(static_cast<double>(hi)));
    double max_dev = 0;
    for (int64_t i = 0; i < n; ++i) {
        const double dev = std::fabs(w[i] - d.mean);
        max_dev = std::max(max_dev, dev);
        if (dev > o.k * d.sigma) ++d.n_outliers;
    }
    d.outlier_frac = static_cast<double>(d.n_outliers) / dn;
    if (d.sigma > 0) {
        d.max_outlier_sigma = max_dev / d.sigma;
        d.range_ratio = d.max_abs / (o.k * d.sigma);
        d.quant_waste = d.range_ratio > 1 ? 1 - 1 / d.range_ratio : 0;
    }
    d.hist_min = lo;
    d.hist_max = hi;
    d.hist_counts.assign(64, 0);
    const double width = (static_cast<double>(hi) - lo) / 64;
    for (int64_t i = 0; i < n; ++i) {
        const int64_t b = width > 0 ? static_cast<int64_t>((w[i] - lo) / width) : 0;
        ++d.hist_counts[static_cast<size_t>(std::clamp<int64_t>(b, 0, 63))];
    }
    if (o.type) {
        const GgmlType t = fallback_type(*o.type, n_cols);
        d.type = t;
        std::vector<float> q(static_cast<size_t>(n));
        fake_quantize(t, w, q.data(), n_rows, n_cols, o.importance);
        for (int64_t g : o.group_sizes)
            if (g > 0 && n_cols % g == 0)
                d.groups.push_back(group_errors(w, q.data(), n_rows, n_cols, g));
    }
    return d;
}

// A group summary's JSON: its fields under their own names.
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(GroupErrorSummary, group_size, n_groups, mean_rmse, p99_rmse,
                                   worst_rmse, worst_row, worst_col)

nlohmann::json to_json(const WeightDiagnostics& d) {
    nlohmann::json groups = d.groups;
    std::vector<double> edges(65);
    for (int i = 0; i <= 64; ++i) edges[i] = d.hist_min + (d.hist_max - d.hist_min) * i / 64.0;
    return {{"name", d.name},
            {"rows", d.n_rows},
            {"cols", d.n_cols},
            {"mean", d.mean},
            {"sigma", d.sigma},
            {"excess_kurtosis", d.excess_kurtosis},
            {"k", d.k},
            {"n_outliers", d.n_outliers},
            {"outlier_frac", d.outlier_frac},
            {"max_outlier_sigma", d.max_outlier_sigma},
            {"max_abs", d.max_abs},
            {"range_ratio", d.range_ratio},
            {"quant_waste", d.quant_waste},
            {"type", d.type ? nlohmann::json(ggml_type_display_name(*d.type)) : nlohmann::json()},
            {"groups", std::move(groups)},
            {"weight_hist",
             {{"counts", d.hist_counts}, {"edges", edges}, {"mean", d.mean}, {"std", d.sigma}}}};
}

}  // namespace quantlens
