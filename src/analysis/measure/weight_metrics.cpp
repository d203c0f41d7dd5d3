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
    if (importance) has_imat_ = true;
    for (int64_t r = 0; r < n_rows; ++r) {
        const float* a = w + r * n_per_row;
        const float* b = w_hat + r * n_per_row;
        for (int64_t j = 0; j < n_per_row; ++j) {
            const double x = a[j], y = b[j], e = x - y;
            const double e2 = e * e;
            sum_e2_ += e2;
            sum_abs_e_ += std::fabs(e);
            max_abs_e_ = std::max(max_abs_e_, std::fabs(e));
            sum_w2_ += x * x;
            sum_wh2_ += y * y;
            sum_w_wh_ += x * y;
            if (importance) {
                imat_e2_ += importance[j] * e2;
                imat_w2_ += importance[j] * x * x;
            }
        }
    }
    n_ += n_rows * n_per_row;
}

void WeightErrorAccumulator::merge(const WeightErrorAccumulator& o) {
    n_ += o.n_;
    sum_e2_ += o.sum_e2_;
    sum_abs_e_ += o.sum_abs_e_;
    max_abs_e_ = std::max(max_abs_e_, o.max_abs_e_);
    sum_w2_ += o.sum_w2_;
    sum_wh2_ += o.sum_wh2_;
    sum_w_wh_ += o.sum_w_wh_;
    has_imat_ = has_imat_ || o.has_imat_;
    imat_e2_ += o.imat_e2_;
    imat_w2_ += o.imat_w2_;
}

WeightErrorAccumulator WeightErrorAccumulator::from_sums(const WeightErrorSums& s) {
    WeightErrorAccumulator a;
    a.n_ = s.n;
    a.sum_e2_ = s.sum_e2;
    a.sum_abs_e_ = s.sum_abs_e;
    a.max_abs_e_ = s.max_abs_e;
    a.sum_w2_ = s.sum_w2;
    a.sum_wh2_ = s.sum_wh2;
    a.sum_w_wh_ = s.sum_w_wh;
    a.has_imat_ = s.has_importance;
    a.imat_e2_ = s.sum_imp_e2;
    a.imat_w2_ = s.sum_imp_w2;
    return a;
}

WeightError WeightErrorAccumulator::result() const {
    WeightError r;
    r.n = n_;
    if (n_ == 0) return r;
    const double inf = std::numeric_limits<double>::infinity();
    r.rmse = std::sqrt(sum_e2_ / static_cast<double>(n_));
    r.max_abs = max_abs_e_;
    r.mean_abs = sum_abs_e_ / static_cast<double>(n_);
    r.rel_frobenius = sum_e2_ == 0 ? 0.0 : (sum_w2_ > 0 ? std::sqrt(sum_e2_ / sum_w2_) : inf);
    if (sum_w2_ == 0 && sum_wh2_ == 0) {
        r.cosine = 1.0;
    } else if (sum_w2_ == 0 || sum_wh2_ == 0) {
        r.cosine = 0.0;
    } else {
        r.cosine = sum_w_wh_ / std::sqrt(sum_w2_ * sum_wh2_);
    }
    r.snr_db = sum_e2_ == 0 ? inf : 10.0 * std::log10(sum_w2_ / sum_e2_);
    r.has_imatrix = has_imat_;
    if (has_imat_) {
        r.imat_sq_err = imat_e2_;
        r.imat_rel_err = imat_e2_ == 0 ? 0.0 : (imat_w2_ > 0 ? imat_e2_ / imat_w2_ : inf);
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
    if (importance) total.has_imat_ = true;
    for (const auto& p : parts) total.merge(p);
    return total;
}

WeightError weight_error(const float* w, const float* w_hat, int64_t n_rows, int64_t n_per_row,
                         const float* importance) {
    return WeightErrorAccumulator::of(w, w_hat, n_rows, n_per_row, importance).result();
}

}  // namespace quantlens
