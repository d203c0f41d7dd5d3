// How much could AWQ's scaling add on top of imatrix-weighted rounding (issue 25)? For every
// 2-D tensor with an imatrix entry and each K-quant type, the imatrix-weighted output error
// Σ imp_j (w − ŵ)² of:
//   - the reference: the tensor quantized with its imatrix (what `quantize --imatrix` writes);
//   - AWQ: w·diag(s) quantized with importance imp_j / s_j², then divided by s, for
//     s = awq_scales(rms, α) as `diagnose` searches them (analysis/studies/awq.h), rms_j = √imp_j,
//     the best α of AwqOptions' grid.
// The ratio AWQ / reference is the upper bound of what a per-tensor AWQ option could save in
// the proxy AWQ itself minimizes; both are measured in the same run. One line per tensor,
// then per role the median and the least ratio.
// Usage: awq_proxy MODEL IMATRIX
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "analysis/studies/awq.h"
#include "core/ggml_type.h"
#include "formats/imatrix.h"
#include "model/model.h"
#include "quant/quant.h"

using namespace quantlens;

namespace {

// Σ imp_j (w − ŵ)² with ŵ = Q(w·diag(s), importance imp/s²)·diag(1/s); α = 0 is the reference.
double weighted_error(const std::vector<float>& w, int64_t n_rows, int64_t n, const float* imp,
                      GgmlType type, double alpha) {
    std::vector<float> rms(n);
    for (int64_t j = 0; j < n; ++j) rms[j] = std::sqrt(std::max(imp[j], 0.0f));
    const std::vector<double> scale = awq_scales(rms.data(), n, alpha);
    std::vector<float> scaled(w.size()), rounded(w.size()), scaled_imp(n);
    for (int64_t j = 0; j < n; ++j)
        scaled_imp[j] = static_cast<float>(imp[j] / (scale[j] * scale[j]));
    for (int64_t r = 0; r < n_rows; ++r)
        for (int64_t j = 0; j < n; ++j)
            scaled[r * n + j] = static_cast<float>(w[r * n + j] * scale[j]);
    fake_quantize(type, scaled.data(), rounded.data(), n_rows, n, scaled_imp.data());
    double error = 0;
    for (int64_t r = 0; r < n_rows; ++r)
        for (int64_t j = 0; j < n; ++j) {
            const double d = w[r * n + j] - rounded[r * n + j] / scale[j];
            error += imp[j] * d * d;
        }
    return error;
}

std::string role_of(const std::string& name) {
    const size_t dot = name.find('.', name.find('.') + 1);  // blk.N.<role>.weight
    return name.rfind("blk.", 0) == 0 ? name.substr(dot + 1) : name;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: awq_proxy MODEL IMATRIX\n");
        return 2;
    }
    const auto model = Model::open(argv[1]);
    const Imatrix imatrix = Imatrix::load(argv[2]);
    const GgmlType types[] = {GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};
    std::map<std::string, std::vector<std::vector<double>>> ratios;  // role → type → ratios
    for (const auto& t : model->tensors()) {
        const int64_t n = t.n_per_row();
        const float* imp = t.ne.size() == 2 ? imatrix.importance(t.name, n) : nullptr;
        if (!imp) continue;
        const auto w = model->read_f32(t);
        auto& per_type = ratios[role_of(t.name)];
        per_type.resize(std::size(types));
        std::printf("%-26s", t.name.c_str());
        for (size_t k = 0; k < std::size(types); ++k) {
            const double reference = weighted_error(w, t.n_rows(), n, imp, types[k], 0.0);
            double best = reference, best_alpha = 0;
            for (double alpha : AwqOptions{}.alphas) {
                const double e = weighted_error(w, t.n_rows(), n, imp, types[k], alpha);
                if (e < best) best = e, best_alpha = alpha;
            }
            per_type[k].push_back(best / reference);
            std::printf(" %s %.3f (α %.1f)", ggml_type_display_name(types[k]).c_str(),
                        best / reference, best_alpha);
        }
        std::printf("\n");
    }
    std::printf("\nper role, AWQ / imatrix rounding: median and least ratio\n");
    for (auto& [role, per_type] : ratios) {
        std::printf("%-20s", role.c_str());
        for (size_t k = 0; k < per_type.size(); ++k) {
            auto& r = per_type[k];
            std::sort(r.begin(), r.end());
            std::printf(" %s %.3f / %.3f", ggml_type_display_name(types[k]).c_str(),
                        r[r.size() / 2], r.front());
        }
        std::printf("\n");
    }
}
