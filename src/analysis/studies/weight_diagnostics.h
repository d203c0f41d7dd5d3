// Weight diagnostics per tensor: how heavy-tailed a weight matrix is and where a
// quantization type loses the most, the "why" beside the sweep's measured sensitivity.
//
// W has R rows of C columns (C = n_per_row); μ, σ over all R·C values (population);
// sums in double.
//   n_outliers / outlier_frac = count / fraction of |w − μ| > k·σ      (k = 3 by default)
//   max_outlier_sigma         = max |w − μ| / σ
//   range_ratio               = max |w| / (k·σ): how far the extreme weights stretch a grid
//                               sized for the bulk of the distribution
//   quant_waste               = 1 − 1 / range_ratio (0 when range_ratio ≤ 1): the share of
//                               a max-scaled grid that lies beyond k·σ, where few weights are
//   excess_kurtosis           = m4 / m2² − 3 (0 for a Gaussian)
//   group error map           = W fake-quantized to `type` (its llama.cpp fallback when the
//                               row does not fit), then the RMSE of W − Ŵ in each run of g
//                               consecutive columns of a row (g = 32/64/128/256), summarized
//                               by mean, 99th percentile (nearest rank) and the worst group
//   histogram                 = 64 equal bins from min to max (what the report draws with ±3σ)
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/ggml_type.h"

namespace quantlens {

struct GroupErrorSummary {
    int64_t group_size = 0;
    int64_t n_groups = 0;
    double mean_rmse = 0, p99_rmse = 0, worst_rmse = 0;
    int64_t worst_row = 0, worst_col = 0;  // first column of the worst group
};

struct WeightDiagnostics {
    std::string name;
    int64_t n_rows = 0, n_cols = 0;
    double mean = 0, sigma = 0, excess_kurtosis = 0;
    double k = 3;
    int64_t n_outliers = 0;
    double outlier_frac = 0, max_outlier_sigma = 0, max_abs = 0;
    double range_ratio = 0, quant_waste = 0;
    std::optional<GgmlType> type;  // the type actually used for the group maps
    std::vector<GroupErrorSummary> groups;
    std::vector<int64_t> hist_counts;  // 64 bins
    double hist_min = 0, hist_max = 0;
};

struct WeightDiagOptions {
    double k = 3;
    std::optional<GgmlType> type;  // no group maps when absent
    std::vector<int64_t> group_sizes = {32, 64, 128, 256};
    const float* importance = nullptr;  // passed to the quantizer (n_cols floats)
};

// w: n_rows × n_cols. Group sizes that do not divide n_cols are skipped.
WeightDiagnostics diagnose_weight(const std::string& name, const float* w, int64_t n_rows,
                                  int64_t n_cols, const WeightDiagOptions& options);

nlohmann::json to_json(const WeightDiagnostics& d);

}  // namespace quantlens
