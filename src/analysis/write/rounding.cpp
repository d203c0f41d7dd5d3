// Rounding as a per-tensor choice: see rounding.h.
#include "analysis/write/rounding.h"

#include <cblas.h>

#include <algorithm>

#include "analysis/write/gptq_rounding.h"
#include "core/error.h"
#include "formats/imatrix.h"
#include "model/model.h"
#include "quant/quant.h"

namespace quantlens {

std::string rounded_type_name(GgmlType type, std::optional<Rounding> rounding) {
    std::string name = ggml_type_display_name(type);
    if (rounding) name += std::string("+") + rounding_name(*rounding);
    return name;
}

std::optional<std::pair<GgmlType, std::optional<Rounding>>> parse_rounded_type(
    const std::string& name) {
    const size_t plus = name.find('+');
    const auto type = ggml_type_from_name(name.substr(0, plus));
    if (!type) return std::nullopt;
    std::pair<GgmlType, std::optional<Rounding>> out{*type, std::nullopt};
    if (plus == std::string::npos) return out;
    out.second = rounding_from_name(name.substr(plus + 1));
    if (!out.second) return std::nullopt;
    return out;
}

RoundingInputs rounding_inputs(Rounding rounding, const Imatrix* imatrix,
                               const GptqRounding* gptq) {
    switch (rounding) {
        case Rounding::plain:
            return {};
        case Rounding::imatrix:
            return {imatrix, nullptr};
        case Rounding::gptq:
            return {imatrix, gptq};
    }
    return {};
}

bool rounding_applies(const TensorInfo& t, GgmlType written, Rounding rounding,
                      const Imatrix* imatrix, const GptqRounding* gptq) {
    if (t.ne.size() != 2) return false;  // stacked experts: one importance column each
    switch (rounding) {
        case Rounding::plain:
            return imatrix && !quant_traits(written).needs_importance &&
                   imatrix->importance(t.name, t.n_per_row()) != nullptr;
        case Rounding::imatrix:
            return imatrix && imatrix->importance(t.name, t.n_per_row()) != nullptr;
        case Rounding::gptq:
            return gptq && gptq->covers(t.name, 2, written);
    }
    return false;
}

double rounding_proxy_error(const TensorInfo& t, const std::vector<float>& original,
                            GgmlType written, Rounding rounding, const Imatrix* imatrix,
                            const GptqRounding* gptq, const std::vector<double>& hessian) {
    QL_CHECK(t.ne.size() == 2, "rounding proxy: tensor '{}' is not a matrix", t.name);
    const int64_t n = t.n_per_row(), n_rows = t.n_rows();
    QL_CHECK(hessian.empty() || hessian.size() == static_cast<size_t>(n * n),
             "rounding proxy: tensor '{}': a Hessian of {} values for rows of {}", t.name,
             hessian.size(), n);
    const int64_t stride = std::max<int64_t>(1, (n_rows + kProxyRows - 1) / kProxyRows);
    std::vector<float> rows;  // (sampled, n)
    for (int64_t r = 0; r < n_rows; r += stride)
        rows.insert(rows.end(), original.begin() + r * n, original.begin() + (r + 1) * n);
    const int64_t m = static_cast<int64_t>(rows.size()) / n;
    const RoundingInputs in = rounding_inputs(rounding, imatrix, gptq);
    const float* imp = in.imatrix ? in.imatrix->importance(t.name, n) : nullptr;
    std::vector<float> q(rows.size());
    if (in.gptq)
        in.gptq->fake_quantize(t.name, written, rows.data(), q.data(), m, n, imp);
    else
        fake_quantize(written, rows.data(), q.data(), m, n, imp);
    std::vector<double> e(rows.size());  // (m, n) rounding errors
    for (size_t i = 0; i < rows.size(); ++i)
        e[i] = static_cast<double>(rows[i]) - static_cast<double>(q[i]);
    double total = 0;
    if (!hessian.empty()) {  // Σ_r e_r H e_rᵀ = Σ E ∘ (E H), E H by BLAS (H is symmetric)
        std::vector<double> eh(e.size());
        cblas_dsymm(CblasRowMajor, CblasRight, CblasUpper, static_cast<int>(m), static_cast<int>(n),
                    1.0, hessian.data(), static_cast<int>(n), e.data(), static_cast<int>(n), 0.0,
                    eh.data(), static_cast<int>(n));
        for (size_t i = 0; i < e.size(); ++i) total += e[i] * eh[i];
        return total;
    }
    const float* weight = imatrix ? imatrix->importance(t.name, n) : nullptr;
    for (int64_t r = 0; r < m; ++r)
        for (int64_t j = 0; j < n; ++j)
            total += (weight ? weight[j] : 1.0) * e[r * n + j] * e[r * n + j];
    return total;
}

}  // namespace quantlens
