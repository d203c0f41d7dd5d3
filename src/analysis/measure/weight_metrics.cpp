// Weight-error metrics (formulas in weight_metrics.h).
#include "analysis/measure/weight_metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/parallel.h"

namespace quantlens {

void WeightErrorAccumulator::add(const float* w, const float* w_hat, int64_t n_rows,
                                 int64_t n_per_row, const float* importance) {
    if (importance) sums_.has_importance = true;
    for (int64_t r = 0; r < n_rows; ++r) {
        const float* a = w + r * n_per_row;
        const float* b = w_hat + r * n_per_row;
        for (int64_t j = 0; j < n_per_row; ++j) {
            const double x = a[j], y = b[j], e = x - y;
            const double e2 = e * e;
            sums_.sum_e2 += e2;
            sums_.sum_abs_e += std::fabs(e);
            sums_.max_abs_e = std::max(sums_.max_abs_e, std::fabs(e));
            sums_.sum_w2 += x * x;
            sums_.sum_wh2 += y * y;
            sums_.sum_w_wh += x * y;
            if (importance) {
                sums_.sum_imp_e2 += importance[j] * e2;
                sums_.sum_imp_w2 += importance[j] * x * x;
            }
        }
    }
    sums_.n += n_rows * n_per_row;
}

void WeightErrorAccumulator::merge(const WeightErrorAccumulator& o) {
    sums_.n += o.sums_.n;
    sums_.sum_e2 += o.sums_.sum_e2;
    sums_.sum_abs_e += o.sums_.sum_abs_e;
    sums_.max_abs_e = std::max(sums_.max_abs_e, o.sums_.max_abs_e);
    sums_.sum_w2 += o.sums_.sum_w2;
    sums_.sum_wh2 += o.sums_.sum_wh2;
    sums_.sum_w_wh += o.sums_.sum_w_wh;
    sums_.has_importance = sums_.has_importance || o.sums_.has_importance;
    sums_.sum_imp_e2 += o.sums_.sum_imp_e2;
    sums_.sum_imp_w2 += o.sums_.sum_imp_w2;
}

WeightErrorAccumulator WeightErrorAccumulator::from_sums(const WeightErrorSums& s) {
    WeightErrorAccumulator a;
    a.sums_ = s;
    return a;
}

WeightError WeightErrorAccumulator::result() const {
    WeightError r;
    r.n = sums_.n;
    if (sums_.n == 0) return r;
    const double inf = std::numeric_limits<double>::infinity();
    r.rmse = std::sqrt(sums_.sum_e2 / static_cast<double>(sums_.n));
    r.max_abs = sums_.max_abs_e;
    r.mean_abs = sums_.sum_abs_e / static_cast<double>(sums_.n);
    r.rel_frobenius =
        sums_.sum_e2 == 0 ? 0.0 : (sums_.sum_w2 > 0 ? std::sqrt(sums_.sum_e2 / sums_.sum_w2) : inf);
    if (sums_.sum_w2 == 0 && sums_.sum_wh2 == 0) {
        r.cosine = 1.0;
    } else if (sums_.sum_w2 == 0 || sums_.sum_wh2 == 0) {
        r.cosine = 0.0;
    } else {
        r.cosine = sums_.sum_w_wh / std::sqrt(sums_.sum_w2 * sums_.sum_wh2);
    }
    r.snr_db = sums_.sum_e2 == 0 ? inf : 10.0 * std::log10(sums_.sum_w2 / sums_.sum_e2);
    r.has_imatrix = sums_.has_importance;
    if (sums_.has_importance) {
        r.imat_sq_err = sums_.sum_imp_e2;
        r.imat_rel_err = sums_.sum_imp_e2 == 0
                             ? 0.0
                             : (sums_.sum_imp_w2 > 0 ? sums_.sum_imp_e2 / sums_.sum_imp_w2 : inf);
    }
    return r;
}

WeightErrorAccumulator WeightErrorAccumulator::of(const float* w, const float* w_hat,
                                                  int64_t n_rows, int64_t n_per_row,
                                                  const float* importance) {
    const int64_t rows_per_block = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, n_per_row));
    const int64_t n_blocks = (n_rows + rows_per_block - 1) / rows_per_block;
    std::vector<WeightErrorAccumulator> parts(static_cast<size_t>(n_blocks));
    parallel_for(static_cast<size_t>(n_blocks), [&](size_t b0, size_t b1) {
        for (size_t b = b0; b < b1; ++b) {
            const int64_t r0 = static_cast<int64_t>(b) * rows_per_block;
            const int64_t rows = std::min(rows_per_block, n_rows - r0);
            parts[b].add(w + r0 * n_per_row, w_hat + r0 * n_per_row, rows, n_per_row, importance);
        }
    });
    WeightErrorAccumulator total;
    if (importance) total.sums_.has_importance = true;
    for (const auto& p : parts) total.merge(p);
    return total;
}

WeightError weight_error(const float* w, const float* w_hat, int64_t n_rows, int64_t n_per_row,
                         const float* importance) {
    return WeightErrorAccumulator::of(w, w_hat, n_rows, n_per_row, importance).result();
}

}  // namespace quantlens
