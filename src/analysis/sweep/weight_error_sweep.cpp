// run_weight_error: tensors are read once and fake-quantized to each type in turn; the
// quantizers are multithreaded over rows, so tensors and types are visited sequentially.
#include "analysis/sweep/weight_error_sweep.h"

#include <cmath>

#include "core/error.h"
#include "formats/imatrix.h"
#include "model/model.h"
#include "quant/quant.h"

namespace quantlens {
namespace {

// Matrices stacked in a tensor (experts of a 3-D MoE tensor), each with its own imatrix slice.
int64_t n_matrices(const TensorInfo& t) {
    int64_t m = 1;
    for (size_t d = 2; d < t.ne.size(); ++d) m *= t.ne[d];
    return m;
}

void check_finite(const TensorInfo& t, const std::vector<float>& w) {
    for (size_t i = 0; i < w.size(); ++i)
        QL_CHECK(std::isfinite(w[i]),
                 "tensor '{}': weight {} (row {}, column {}) is {}; expected finite values", t.name,
                 i, static_cast<int64_t>(i) / t.n_per_row(),
                 static_cast<int64_t>(i) % t.n_per_row(), w[i]);
}

}  // namespace

WeightErrorReport run_weight_error(const Model& model, const std::vector<GgmlType>& types,
                                   const Imatrix* imatrix,
                                   const std::function<void(int64_t, int64_t)>& progress) {
    WeightErrorReport rep;
    rep.types = types;
    std::vector<WeightErrorAccumulator> acc(types.size());
    rep.totals.resize(types.size());
    for (size_t k = 0; k < types.size(); ++k) rep.totals[k].type = types[k];

    std::vector<const TensorInfo*> tensors;
    for (const auto& t : model.tensors())
        if (t.quantizable) tensors.push_back(&t);
    const int64_t total = static_cast<int64_t>(tensors.size() * types.size());
    int64_t done = 0;

    std::vector<float> w_hat;
    for (const TensorInfo* t : tensors) {
        const std::vector<float> w = model.read_f32(*t);
        check_finite(*t, w);
        const int64_t n_per_row = t->n_per_row();
        const int64_t n_mat = n_matrices(*t);
        const int64_t rows_per_mat = t->n_rows() / n_mat;
        std::vector<const float*> imat(static_cast<size_t>(n_mat), nullptr);
        if (imatrix)
            for (int64_t m = 0; m < n_mat; ++m)
                imat[static_cast<size_t>(m)] = imatrix->importance(t->name, n_per_row, n_mat, m);
        w_hat.resize(w.size());

        for (size_t k = 0; k < types.size(); ++k) {
            const GgmlType req = types[k];
            const GgmlType used = fallback_type(req, n_per_row);
            const std::string req_name = ggml_type_display_name(req);
            const std::string used_name = ggml_type_display_name(used);
            if (progress) progress(++done, total);
            if (quant_traits(used).needs_importance && !imat[0]) {
                rep.skipped.push_back(fmt::format(
                    "{} x {}: {} needs an imatrix entry{}", t->name, req_name, used_name,
                    imatrix ? " (none for this tensor)" : " (no --imatrix)"));
                continue;
            }
            if (used != req)
                rep.totals[k].fallbacks.push_back(fmt::format(
                    "{}: {} -> {} (row length {})", t->name, req_name, used_name, n_per_row));
            WeightErrorAccumulator tensor_acc;
            try {
                for (int64_t m = 0; m < n_mat; ++m) {
                    const size_t off = static_cast<size_t>(m * rows_per_mat * n_per_row);
                    fake_quantize(used, w.data() + off, w_hat.data() + off, rows_per_mat, n_per_row,
                                  imat[static_cast<size_t>(m)]);
                    tensor_acc.merge(WeightErrorAccumulator::of(w.data() + off, w_hat.data() + off,
                                                                rows_per_mat, n_per_row,
                                                                imat[static_cast<size_t>(m)]));
                }
            } catch (const Error& e) {
                fail("tensor '{}': {}", t->name, e.what());
            }
            WeightErrorRow row;
            row.tensor = t->name;
            row.requested = req;
            row.used = used;
            row.n_params = t->n_elements();
            row.bytes = ggml_row_size(used, n_per_row) * static_cast<uint64_t>(t->n_rows());
            row.error = tensor_acc.result();
            acc[k].merge(tensor_acc);
            rep.totals[k].n_params += row.n_params;
            rep.totals[k].bytes += row.bytes;
            rep.rows.push_back(std::move(row));
        }
    }
    for (size_t k = 0; k < types.size(); ++k) {
        auto& tot = rep.totals[k];
        tot.error = acc[k].result();
        tot.bpw = tot.n_params
                      ? 8.0 * static_cast<double>(tot.bytes) / static_cast<double>(tot.n_params)
                      : 0;
    }
    return rep;
}

}  // namespace quantlens
