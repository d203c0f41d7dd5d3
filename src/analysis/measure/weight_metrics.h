// Weight-level quantization error: how far a dequantized tensor Ŵ is from the original W.
// The one place these metrics are defined; everything that reports them calls this.
//
// W has R rows of C columns (C = n_per_row, the input dimension); N = R·C; E = W − Ŵ.
// All sums are accumulated in double.
//   rmse            = sqrt( Σ E² / N )
//   max_abs         = max |E|
//   mean_abs        = Σ |E| / N
//   rel_frobenius   = ‖E‖_F / ‖W‖_F = sqrt(Σ E²) / sqrt(Σ W²)       (0 if Σ E² = 0)
//   cosine          = Σ W·Ŵ / sqrt(Σ W² · Σ Ŵ²)                      (1 if W = Ŵ = 0)
//   snr_db          = 10 · log10( Σ W² / Σ E² )                     (+inf if E = 0)
// With an imatrix (per-column importance a_j = mean of x_j² over calibration tokens):
//   imat_sq_err     = Σ_j a_j Σ_i E_ij²
//                     = the expected squared output error E‖(W−Ŵ)x‖² when the inputs x
//                       have a diagonal second moment diag(a) (summed over the R outputs)
//   imat_rel_err    = imat_sq_err / Σ_j a_j Σ_i W_ij²   (the same, relative to E‖Wx‖²)
#pragma once

#include <algorithm>
#include <cstdint>

#include "engine/sweep_backend.h"

namespace quantlens {

struct WeightError {
    int64_t n = 0;  // weights compared
    double rmse = 0;
    double max_abs = 0;
    double mean_abs = 0;
    double rel_frobenius = 0;
    double cosine = 1;
    double snr_db = 0;
    bool has_imatrix = false;
    double imat_sq_err = 0;
    double imat_rel_err = 0;
};

// snr_db as the JSON of sweeps and comparisons stores it: JSON has no inf, so an exact
// reproduction (E = 0, infinite SNR) is written as 999 dB.
inline double snr_db_for_json(const WeightError& e) {
    return std::min(e.snr_db, 999.0);
}

// Running sums over rows; combine partial results with merge() (in a fixed order for
// reproducible totals).
class WeightErrorAccumulator {
  public:
    // Adds n_rows rows of n_per_row weights; importance is n_per_row per-column weights or
    // nullptr (then the imatrix metrics stay absent).
    void add(const float* w, const float* w_hat, int64_t n_rows, int64_t n_per_row,
             const float* importance = nullptr);
    void merge(const WeightErrorAccumulator& other);
    // add() over a whole tensor, rows split across the thread pool in fixed blocks merged in
    // order, so the sums do not depend on the thread count.
    static WeightErrorAccumulator of(const float* w, const float* w_hat, int64_t n_rows,
                                     int64_t n_per_row, const float* importance = nullptr);
    WeightError result() const;
    // The sums a backend reduced elsewhere (the GPU), without importance.
    static WeightErrorAccumulator from_sums(const WeightErrorSums& sums);

  private:
    WeightErrorSums sums_;  // the same sums a backend reduces, so from_sums() is a copy
};

// The whole tensor at once, rows split across the thread pool; deterministic.
WeightError weight_error(const float* w, const float* w_hat, int64_t n_rows, int64_t n_per_row,
                         const float* importance = nullptr);

}  // namespace quantlens
