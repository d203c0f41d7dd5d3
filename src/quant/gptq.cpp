// GPTQ in ggml block formats; the contract is in gptq.h, the per-format grids in
// gptq_grid.cpp. Everything here is double precision except the weights handed to the block
// quantizer and the rounding itself, which see the float values ggml would.
#include "quant/gptq.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "core/error.h"
#include "core/parallel.h"
#include "quant/gptq_grid.h"
#include "quant/quant.h"

namespace quantlens {
namespace {

using gptq_detail::BlockGrid;
using gptq_detail::GridFormat;

// Rows a task carries through the whole column sweep at once: the lazy update streams each
// row of U once per group, so more rows per group mean less memory traffic per flop.
constexpr int64_t kRowGroup = 16;

// Σ a[k]·b[k] over k < n with four independent partial sums, so the compiler can vectorize
// (a plain sum is a serial dependency chain without -ffast-math).
double dot(const double* a, const double* b, int64_t n) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t k = 0;
    for (; k + 4 <= n; k += 4) {
        s0 += a[k] * b[k];
        s1 += a[k + 1] * b[k + 1];
        s2 += a[k + 2] * b[k + 2];
        s3 += a[k + 3] * b[k + 3];
    }
    for (; k < n; ++k) s0 += a[k] * b[k];
    return (s0 + s1) + (s2 + s3);
}

// "Reverse" Cholesky H = R·Rᵀ with R upper triangular (a: n × n row-major, upper triangle
// read; r: n × n out). Works from the last column back: R_jj² = H_jj − Σ_{k>j} R_jk²,
// R_ij = (H_ij − Σ_{k>j} R_ik·R_jk) / R_jj for i < j. False when a pivot is not positive.
bool reverse_cholesky(const double* a, int64_t n, std::vector<double>& r) {
    r.assign(static_cast<size_t>(n * n), 0.0);
    for (int64_t j = n - 1; j >= 0; --j) {
        const double* rj = r.data() + j * n;
        const double s = a[j * n + j] - dot(rj + j + 1, rj + j + 1, n - j - 1);
        if (!(s > 0) || !std::isfinite(s)) return false;
        const double pivot = std::sqrt(s);
        r[static_cast<size_t>(j * n + j)] = pivot;
        // Rows i < j of column j are independent dot products of row tails.
        parallel_for(
            static_cast<size_t>(j),
            [&](size_t i0, size_t i1) {
                for (size_t i = i0; i < i1; ++i) {
                    const double* ri = r.data() + static_cast<int64_t>(i) * n;
                    const double t =
                        a[static_cast<int64_t>(i) * n + j] - dot(ri + j + 1, rj + j + 1, n - j - 1);
                    r[i * static_cast<size_t>(n) + static_cast<size_t>(j)] = t / pivot;
                }
            },
            64);
    }
    return true;
}

// U = R⁻¹ for upper triangular R, one column at a time (back substitution of R·u = e_j).
void invert_upper(const std::vector<double>& r, int64_t n, std::vector<double>& u) {
    u.assign(static_cast<size_t>(n * n), 0.0);
    parallel_for(
        static_cast<size_t>(n),
        [&](size_t j0, size_t j1) {
            std::vector<double> col(static_cast<size_t>(n));
            for (size_t jj = j0; jj < j1; ++jj) {
                const auto j = static_cast<int64_t>(jj);
                col[jj] = 1.0 / r[jj * static_cast<size_t>(n) + jj];
                for (int64_t i = j - 1; i >= 0; --i) {
                    const double* ri = r.data() + i * n;
                    const double t = dot(ri + i + 1, col.data() + i + 1, j - i);
                    col[static_cast<size_t>(i)] = -t / ri[i];
                }
                for (int64_t i = 0; i <= j; ++i)
                    u[static_cast<size_t>(i * n + j)] = col[static_cast<size_t>(i)];
            }
        },
        8);
}

std::string supported_list() {
    std::string s;
    for (GgmlType t : {GgmlType::Q8_0, GgmlType::Q6_K, GgmlType::Q5_K, GgmlType::Q4_K,
                       GgmlType::Q3_K, GgmlType::Q2_K, GgmlType::IQ4_XS})
        s += (s.empty() ? "" : ", ") + std::string(quant_traits(t).name);
    return s;
}

// One group of rows [r0, r0 + nr) through the whole sweep; writes their blocks into out.
// Position j of the sweep is column perm[j] of the weight (identity without act order);
// W, E and u are in sweep order, codes in weight order.
void gptq_rows(const GridFormat& f, const float* w, uint8_t* out, int64_t r0, int64_t nr, int64_t n,
               size_t row_bytes, size_t block_bytes, const GptqFactor& factor,
               const float* importance, const GptqOptions& o) {
    const int64_t bs = f.block, B = o.batch, nb = n / bs;
    const double* u = factor.u.data();
    const bool act_order = !factor.perm.empty();
    auto col = [&](int64_t j) { return act_order ? factor.perm[static_cast<size_t>(j)] : j; };
    auto block_of = [&](int64_t r, int64_t b) {
        return out + static_cast<size_t>(r0 + r) * row_bytes + static_cast<size_t>(b) * block_bytes;
    };
    std::vector<double> W(static_cast<size_t>(nr * n));  // (nr, n) working weights
    for (int64_t r = 0; r < nr; ++r)
        for (int64_t j = 0; j < n; ++j)
            W[static_cast<size_t>(r * n + j)] = w[(r0 + r) * n + col(j)];
    std::vector<double> E(static_cast<size_t>(nr * B));       // (nr, B) scaled errors of a batch
    std::vector<uint8_t> codes(static_cast<size_t>(nr * n));  // (nr, n)
    // Act order: every block's grid, fixed from the original weights; else the current block.
    const int64_t grids_per_row = act_order ? nb : 1;
    std::vector<BlockGrid> grids(static_cast<size_t>(nr * grids_per_row));
    std::vector<float> xb(static_cast<size_t>(bs));
    if (act_order) {
        for (int64_t r = 0; r < nr; ++r)
            for (int64_t b = 0; b < nb; ++b) {
                const float* x = w + (r0 + r) * n + b * bs;
                f.quantize(x, block_of(r, b), 1, bs, importance ? importance + b * bs : nullptr);
                gptq_detail::decode(f, block_of(r, b), x, grids[static_cast<size_t>(r * nb + b)]);
            }
    }

    for (int64_t i1 = 0; i1 < n; i1 += B) {
        const int64_t i2 = std::min(n, i1 + B);
        for (int64_t j = i1; j < i2; ++j) {
            if (!act_order && j % bs == 0) {
                // Every column of the block is current here: the block starts the batch, or
                // lies inside it (gptq_quantize checks the batch width).
                for (int64_t r = 0; r < nr; ++r) {
                    const double* wr = W.data() + r * n + j;
                    for (int64_t c = 0; c < bs; ++c)
                        xb[static_cast<size_t>(c)] = static_cast<float>(wr[c]);
                    f.quantize(xb.data(), block_of(r, j / bs), 1, bs,
                               importance ? importance + j : nullptr);
                    gptq_detail::decode(f, block_of(r, j / bs), xb.data(),
                                        grids[static_cast<size_t>(r)]);
                }
            }
            const double* uj = u + j * n;
            const double ujj = uj[j];
            const int64_t cj = col(j);
            const int c = static_cast<int>(cj % bs);
            for (int64_t r = 0; r < nr; ++r) {
                double* wr = W.data() + r * n;
                const BlockGrid& g = grids[static_cast<size_t>(act_order ? r * nb + cj / bs : r)];
                float v;
                codes[static_cast<size_t>(r * n + cj)] =
                    gptq_detail::round_weight(f, g, c, static_cast<float>(wr[j]), &v);
                const double e = (wr[j] - v) / ujj;
                E[static_cast<size_t>(r * B + (j - i1))] = e;
                if (o.propagate)
                    for (int64_t k = j + 1; k < i2; ++k) wr[k] -= e * uj[k];
            }
        }
        if (!o.propagate || i2 == n) continue;
        // Lazy update: W[:, i2:] −= E · U[i1:i2, i2:].
        for (int64_t t = 0; t < i2 - i1; ++t) {
            const double* ut = u + (i1 + t) * n;
            for (int64_t r = 0; r < nr; ++r) {
                const double e = E[static_cast<size_t>(r * B + t)];
                if (e == 0) continue;
                double* wr = W.data() + r * n;
                for (int64_t k = i2; k < n; ++k) wr[k] -= e * ut[k];
            }
        }
    }
    for (int64_t r = 0; r < nr; ++r)
        for (int64_t b = 0; b < nb; ++b)
            gptq_detail::pack(f, codes.data() + r * n + b * bs, block_of(r, b));
}

}  // namespace

GptqFactor gptq_factor(const double* hessian, int64_t n, const GptqOptions& o) {
    QL_CHECK(n > 0, "gptq: Hessian of size {}", n);
    QL_CHECK(o.damp >= 0, "gptq: damping {} must be >= 0", o.damp);
    std::vector<double> h(hessian, hessian + n * n);
    double mean_diag = 0;
    for (int64_t j = 0; j < n; ++j) {
        double& d = h[static_cast<size_t>(j * n + j)];
        QL_CHECK(std::isfinite(d) && d >= 0, "gptq: Hessian diagonal {} is {}; expected >= 0", j,
                 d);
        // A never-seen input: its weight column takes no error and passes none on.
        if (d == 0) d = 1;
        mean_diag += d;
    }
    mean_diag /= static_cast<double>(n);
    GptqFactor f;
    f.n = n;
    if (o.act_order) {
        f.perm.resize(static_cast<size_t>(n));
        for (int64_t j = 0; j < n; ++j) f.perm[static_cast<size_t>(j)] = j;
        std::stable_sort(f.perm.begin(), f.perm.end(), [&](int64_t a, int64_t b) {
            return h[static_cast<size_t>(a * n + a)] > h[static_cast<size_t>(b * n + b)];
        });
        std::vector<double> hp(h.size());
        for (int64_t i = 0; i < n; ++i)
            for (int64_t j = 0; j < n; ++j) {
                const int64_t pi = f.perm[static_cast<size_t>(i)],
                              pj = f.perm[static_cast<size_t>(j)];
                // Only the upper triangle of the input is valid: read (min, max).
                hp[static_cast<size_t>(i * n + j)] =
                    h[static_cast<size_t>(std::min(pi, pj) * n + std::max(pi, pj))];
            }
        h.swap(hp);
    }
    std::vector<double> r;
    double lambda = o.damp * mean_diag;
    for (int attempt = 0; attempt < 6; ++attempt) {
        std::vector<double> hd = h;
        for (int64_t j = 0; j < n; ++j) hd[static_cast<size_t>(j * n + j)] += lambda;
        if (reverse_cholesky(hd.data(), n, r)) {
            f.damp_used = lambda;
            invert_upper(r, n, f.u);
            return f;
        }
        lambda = lambda > 0 ? 10 * lambda : 1e-6 * mean_diag;
    }
    fail("gptq: the {} x {} Hessian is not positive definite even with damping {}", n, n, lambda);
}

bool gptq_supports(GgmlType type) {
    return gptq_detail::grid_format(type) != nullptr;
}

size_t gptq_quantize(GgmlType type, const float* w, void* dst, int64_t n_rows, int64_t n_per_row,
                     const GptqFactor& factor, const float* importance, const GptqOptions& o) {
    const GridFormat* f = gptq_detail::grid_format(type);
    QL_CHECK(f, "gptq: type {} is not supported (supported: {})", quant_traits(type).name,
             supported_list());
    QL_CHECK(n_rows >= 0 && n_per_row > 0 && n_per_row % f->block == 0,
             "gptq to {}: row length {} is not a multiple of the block size {}",
             quant_traits(type).name, n_per_row, f->block);
    QL_CHECK(factor.n == n_per_row, "gptq to {}: Hessian factor of size {} for rows of {}",
             quant_traits(type).name, factor.n, n_per_row);
    QL_CHECK(o.batch > 0 && (o.batch % f->block == 0 || f->block % o.batch == 0),
             "gptq to {}: batch width {} must divide or be a multiple of the block size {}",
             quant_traits(type).name, o.batch, f->block);
    if (importance)
        for (int64_t j = 0; j < n_per_row; ++j)
            QL_CHECK(std::isfinite(importance[j]) && importance[j] >= 0,
                     "gptq to {}: importance weight {} is {}; expected finite and >= 0",
                     quant_traits(type).name, j, importance[j]);
    for (int64_t i = 0; i < n_rows * n_per_row; ++i)
        QL_CHECK(std::isfinite(w[i]), "gptq to {}: weight at row {}, column {} is {}",
                 quant_traits(type).name, i / n_per_row, i % n_per_row, w[i]);

    const size_t row_bytes = ggml_row_size(type, n_per_row);
    const size_t block_bytes = quant_traits(type).bytes_per_block;
    auto* out = static_cast<uint8_t*>(dst);
    const int64_t n_groups = (n_rows + kRowGroup - 1) / kRowGroup;
    parallel_for(static_cast<size_t>(n_groups), [&](size_t g0, size_t g1) {
        for (size_t g = g0; g < g1; ++g) {
            const int64_t r0 = static_cast<int64_t>(g) * kRowGroup;
            gptq_rows(*f, w, out, r0, std::min(kRowGroup, n_rows - r0), n_per_row, row_bytes,
                      block_bytes, factor, importance, o);
        }
    });
    return static_cast<size_t>(n_rows) * row_bytes;
}

size_t gptq_quantize(GgmlType type, const float* w, void* dst, int64_t n_rows, int64_t n_per_row,
                     const double* hessian, const float* importance, const GptqOptions& o) {
    QL_CHECK(gptq_supports(type), "gptq: type {} is not supported (supported: {})",
             quant_traits(type).name, supported_list());
    const GptqFactor factor = gptq_factor(hessian, n_per_row, o);
    return gptq_quantize(type, w, dst, n_rows, n_per_row, factor, importance, o);
}

}  // namespace quantlens
