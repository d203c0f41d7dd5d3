// Input Hessians from engine hooks; the contract is in hessian.h.
#include "analysis/measure/hessian.h"

#include <cblas.h>

#include <algorithm>
#include <cstring>
#include <span>

#include "core/error.h"

namespace quantlens {

EngineHook HessianCollector::hook() {
    return [this](const HookEvent& e) { on_event(e); };
}

void HessianCollector::on_event(const HookEvent& e) {
    if (e.kind != HookEvent::Kind::LinearInput || e.tensor == nullptr || e.rows <= 0) return;
    const std::string& name = *e.tensor;
    const bool wanted = name.rfind("blk.", 0) == 0 || (include_output_ && e.layer < 0);
    if (!wanted || (e.expert >= 0 && !include_experts_)) return;
    Matrix& m = mats_[{name, e.expert}];
    if (m.n_cols == 0) {
        m.n_cols = e.cols;
        m.upper.assign(static_cast<size_t>(e.cols * e.cols), 0.0);
    }
    QL_CHECK(m.n_cols == e.cols, "tensor '{}': input rows of {} and {} values in one run", name,
             m.n_cols, e.cols);
    const int64_t n = e.rows * e.cols;
    const bool same = e.rows == last_rows_ && e.cols == last_cols_ &&
                      std::memcmp(e.data, last_input_.data(), static_cast<size_t>(n) * 4) == 0;
    if (!same) {
        last_input_.assign(e.data, e.data + n);
        last_rows_ = e.rows;
        last_cols_ = e.cols;
        scratch_.resize(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) scratch_[static_cast<size_t>(i)] = e.data[i];
        last_xtx_.resize(static_cast<size_t>(e.cols * e.cols));
        // last_xtx_ (upper) = Xᵀ X, X = scratch_ (rows, cols) row-major.
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, static_cast<int>(e.cols),
                    static_cast<int>(e.rows), 1.0, scratch_.data(), static_cast<int>(e.cols), 0.0,
                    last_xtx_.data(), static_cast<int>(e.cols));
    }
    for (int64_t i = 0; i < e.cols; ++i) {
        double* dst = m.upper.data() + i * e.cols;
        const double* src = last_xtx_.data() + i * e.cols;
        for (int64_t j = i; j < e.cols; ++j) dst[j] += src[j];
    }
    m.tokens += e.rows;
}

std::vector<std::pair<std::string, int>> HessianCollector::matrices() const {
    std::vector<std::pair<std::string, int>> out;
    for (const auto& [key, m] : mats_) out.push_back(key);
    return out;
}

bool HessianCollector::has(const std::string& tensor, int expert) const {
    return mats_.count({tensor, expert}) != 0;
}

int64_t HessianCollector::n_cols(const std::string& tensor, int expert) const {
    const auto it = mats_.find({tensor, expert});
    return it == mats_.end() ? 0 : it->second.n_cols;
}

int64_t HessianCollector::tokens(const std::string& tensor, int expert) const {
    const auto it = mats_.find({tensor, expert});
    return it == mats_.end() ? 0 : it->second.tokens;
}

std::vector<double> HessianCollector::hessian(const std::string& tensor, int expert) const {
    const auto it = mats_.find({tensor, expert});
    QL_CHECK(it != mats_.end(), "no input Hessian was collected for tensor '{}' (expert {})",
             tensor, expert);
    const int64_t n = it->second.n_cols;
    std::vector<double> h = it->second.upper;
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < i; ++j)
            h[static_cast<size_t>(i * n + j)] = h[static_cast<size_t>(j * n + i)];
    return h;
}

void run_hessians(Engine& engine, const EvalChunks& chunks, HessianCollector& collector,
                  int64_t batch) {
    QL_CHECK(chunks.n_chunks >= 1 && chunks.n_ctx >= 1, "no chunk of {} tokens to collect on",
             chunks.n_ctx);
    engine.set_hook(collector.hook());
    struct HookReset {
        Engine& e;
        ~HookReset() { e.clear_hook(); }
    } reset{engine};
    const int64_t T = chunks.n_ctx;
    batch = std::max<int64_t>(1, batch);
    for (int64_t c = 0; c < chunks.n_chunks; c += batch) {
        const int64_t B = std::min(batch, chunks.n_chunks - c);
        const std::span<const int32_t> tokens(chunks.tokens.data() + c * T,
                                              static_cast<size_t>(B * T));
        std::vector<float> h = engine.embed(tokens);
        for (int64_t l = 0; l < engine.n_layers(); ++l) engine.run_layer(l, h.data(), B, T);
        engine.head(h.data(), B, T, 0);  // for the head's input only
    }
}

}  // namespace quantlens
