#include "model/imatrix_coverage.h"

#include <algorithm>
#include <cstdio>
#include <set>

#include <fmt/format.h>

#include "core/error.h"

namespace quantlens {

ImatrixCoverage check_imatrix_coverage(const Imatrix& imatrix, const Model& model) {
    std::set<std::string> quantizable;
    for (const auto& t : model.tensors())
        // Lookup tables take no matmul input, so no imatrix entry (Gemma 4's PLE table too).
        if (t.quantizable && t.name != "token_embd.weight" && t.role != TensorRole::PleTokenEmbd)
            quantizable.insert(t.name);

    ImatrixCoverage cov;
    cov.zero_count_matrices = imatrix.zero_count_matrices();
    std::set<std::pair<std::string, int64_t>> fallback;  // their 1s are no calibration data
    for (const auto& f : cov.zero_count_matrices) fallback.insert({f.tensor, f.matrix});
    std::set<std::string> covered;
    bool any_nonzero = false;
    for (const ImatrixEntry& e : imatrix.entries()) {
        if (quantizable.count(e.name)) {
            covered.insert(e.name);
        } else if (!model.find(e.name)) {
            cov.unmatched_entries.push_back(e.name);
        }
        const auto n_mat = static_cast<int64_t>(std::max<size_t>(e.counts.size(), 1));
        const int64_t n_per_row = e.n_values / n_mat;
        for (int64_t m = 0; m < n_mat && !any_nonzero; ++m) {
            if (fallback.count({e.name, m})) continue;
            for (int64_t j = 0; j < n_per_row; ++j)
                if (e.values[static_cast<size_t>(m * n_per_row + j)] != 0.0f) {
                    any_nonzero = true;
                    break;
                }
        }
    }
    QL_CHECK(!imatrix.entries().empty() && !covered.empty(),
             "{}: none of its {} entries names a quantizable tensor of {} (first: '{}'); it would "
             "quantize exactly as without an imatrix. Was it made for another model?",
             imatrix.path(), imatrix.entries().size(), model.path(),
             imatrix.entries().empty() ? std::string() : imatrix.entries().front().name);
    QL_CHECK(any_nonzero,
             "{}: every importance value is zero (no calibration token reached any tensor); "
             "quantizing with it would write a broken model",
             imatrix.path());
    for (const auto& name : quantizable)
        if (!covered.count(name)) cov.uncovered_tensors.push_back(name);
    return cov;
}

namespace {

std::string name_list(const std::vector<std::string>& names) {
    constexpr size_t kShown = 10;
    std::string out;
    for (size_t i = 0; i < names.size() && i < kShown; ++i) out += (i ? ", " : "") + names[i];
    if (names.size() > kShown) out += fmt::format(" and {} more", names.size() - kShown);
    return out;
}

}  // namespace

Imatrix load_imatrix_for(const Model& model, const std::string& path) {
    Imatrix imatrix = Imatrix::load(path);
    const ImatrixCoverage cov = check_imatrix_coverage(imatrix, model);
    if (!cov.unmatched_entries.empty())
        fmt::print(stderr, "warning: {}: {} entr{} match no tensor of {} and are ignored: {}\n",
                   path, cov.unmatched_entries.size(),
                   cov.unmatched_entries.size() == 1 ? "y does" : "ies do", model.path(),
                   name_list(cov.unmatched_entries));
    if (!cov.uncovered_tensors.empty())
        fmt::print(stderr,
                   "warning: {}: no importance for {} tensor{} of {}, quantized unweighted: {}\n",
                   path, cov.uncovered_tensors.size(), cov.uncovered_tensors.size() == 1 ? "" : "s",
                   model.path(), name_list(cov.uncovered_tensors));
    if (!cov.zero_count_matrices.empty()) {
        std::vector<std::string> names;
        std::set<std::string> tensors;
        for (const auto& f : cov.zero_count_matrices) {
            names.push_back(fmt::format("{}[expert {}]", f.tensor, f.matrix));
            tensors.insert(f.tensor);
        }
        fmt::print(stderr,
                   "note: {}: {} expert matri{} of {} tensor{} got no calibration token; their "
                   "importance is 1 in every column (llama.cpp's fallback): {}\n",
                   path, names.size(), names.size() == 1 ? "x" : "ces", tensors.size(),
                   tensors.size() == 1 ? "" : "s", name_list(names));
    }
    return imatrix;
}

}  // namespace quantlens
