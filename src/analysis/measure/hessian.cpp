// Input Hessians from engine hooks; the contract is in hessian.h.
#include "analysis/measure/hessian.h"

#include <cblas.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <span>

#include "analysis/measure/activation_stats.h"
#include "core/error.h"
#include "core/parallel.h"
#include "model/model.h"
#ifdef QL_HAVE_CUDA
#include "engine/cuda/cuda_stats.h"
#endif

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

void HessianCollector::add_sum(const std::string& name, int layer, int64_t n_cols, int64_t tokens,
                               const double* upper, int expert) {
    const bool wanted = name.rfind("blk.", 0) == 0 || (include_output_ && layer < 0);
    if (!wanted || tokens <= 0 || (expert >= 0 && !include_experts_)) return;
    Matrix& m = mats_[{name, expert}];
    if (m.n_cols == 0) {
        m.n_cols = n_cols;
        m.upper.assign(static_cast<size_t>(n_cols * n_cols), 0.0);
    }
    QL_CHECK(m.n_cols == n_cols, "tensor '{}': input rows of {} and {} values in one run", name,
             m.n_cols, n_cols);
    // Rows in parallel (an 8B model hands over 78 GB of sums at the end of a GPU run).
    parallel_for(static_cast<size_t>(n_cols), [&](size_t r0, size_t r1) {
        for (auto i = static_cast<int64_t>(r0); i < static_cast<int64_t>(r1); ++i) {
            double* dst = m.upper.data() + i * n_cols;
            const double* src = upper + i * n_cols;
            for (int64_t j = i; j < n_cols; ++j) dst[j] += src[j];
        }
    });
    m.tokens += tokens;
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
    const ScopedEngineHook attached(engine, collector.hook());
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

namespace quantlens {

void run_hessians_gpu(const Model& model, const EvalChunks& chunks, HessianCollector& collector,
                      int64_t batch, const std::string& what, int64_t device_budget_bytes) {
#ifdef QL_HAVE_CUDA
    const ModelConfig& c = model.config();
    QL_CHECK(chunks.n_chunks >= 1 && chunks.n_ctx >= 1, "no chunk of {} tokens to collect on",
             chunks.n_ctx);
    std::string why;
    QL_CHECK(cuda::device_available(&why), "{}: {}", what, why);
    const int64_t T = chunks.n_ctx;
    batch = std::max<int64_t>(1, batch);
    cuda::CudaEngineOptions o;
    o.precision = cuda::Precision::F16;
    o.max_tokens = batch * T;
    cuda::CudaEngine gpu(c, o);
    gpu.load_model(model);
    cuda::TapReducer sums(o.precision);
    cuda::TapForward forward(gpu);
    auto run_text = [&] {
        for (int64_t ch = 0; ch < chunks.n_chunks; ch += batch) {
            const int64_t B = std::min(batch, chunks.n_chunks - ch);
            const auto* first = chunks.tokens.data() + ch * T;
            forward.run(std::vector<int32_t>(first, first + B * T), B, T);
        }
    };

    // Inputs by the first weight they feed; each is summed in one pass over the text.
    struct Input {
        std::vector<std::string> weights;
        int layer = 0, expert = -1;
        int64_t n_cols = 0;
        int pass = -1;  // -1: not yet placed
    };
    std::map<std::string, Input> inputs;
    int pass = 0;
    int64_t budget = device_budget_bytes, used = 0;
    if (budget <= 0) {
        // Kept back from the accumulators: the widest product (F32), the forward's hidden
        // states and logits, and the engine's activation scratch, all allocated at the first
        // batch, plus a margin.
        const int64_t widest = std::max(
            {c.hidden, c.ffn, c.dense_ffn_width(), c.shared_expert_ffn, c.n_heads * c.head_dim});
        const int64_t free = cuda::device_free_bytes();
        budget = free - 4 * widest * widest - 4 * o.max_tokens * (c.vocab + c.hidden) - free / 10 -
                 (int64_t{2} << 30);
    }
    auto place = [&](Input& in) {
        const int64_t bytes = cuda::TapReducer::hessian_bytes(in.n_cols);
        if (used + bytes > budget) return false;
        in.pass = pass;
        used += bytes;
        return true;
    };
    gpu.set_tap([&](const cuda::ActivationTap& t) {
        if (t.kind != cuda::ActivationTap::Kind::LinearInput) return;
        if (t.expert >= 0 && !collector.include_experts()) return;
        const std::vector<std::string>& w = *t.weights;
        const std::string key = t.expert < 0 ? w[0] : fmt::format("{}#{}", w[0], t.expert);
        auto [it, fresh] = inputs.try_emplace(key);
        if (fresh) {
            it->second.weights = w;
            it->second.layer = t.layer;
            it->second.expert = t.expert;
            it->second.n_cols = t.cols;
            place(it->second);
        }
        if (it->second.pass == pass) sums.add_hessian(key, t);
    });
    for (;; ++pass) {
        if (pass > 0) {
            used = 0;
            bool pending = false, placed = false;
            for (auto& [key, in] : inputs)
                if (in.pass < 0) {
                    pending = true;
                    placed = place(in) || placed;
                }
            if (!pending) break;
            if (!placed) {
                const auto& [key, in] =
                    *std::find_if(inputs.begin(), inputs.end(),
                                  [](const auto& kv) { return kv.second.pass < 0; });
                fail(
                    "{}: the Hessian of the input of '{}' ({} x {} doubles, {:.2f} GiB) does not "
                    "fit in the {:.2f} GiB of GPU memory left beside the model",
                    what, key, in.n_cols, in.n_cols,
                    static_cast<double>(cuda::TapReducer::hessian_bytes(in.n_cols)) / (1 << 30),
                    static_cast<double>(std::max<int64_t>(budget, 0)) / (1 << 30));
            }
        }
        run_text();
        for (const auto& [key, in] : inputs) {
            if (in.pass != pass) continue;
            int64_t tokens = 0;
            const std::vector<double> h = sums.hessian(key, &tokens);
            for (const std::string& name : in.weights)
                collector.add_sum(name, in.layer, in.n_cols, tokens, h.data(), in.expert);
        }
        sums.drop_hessians();
    }
    gpu.set_tap({});
#else
    (void)model, (void)chunks, (void)collector, (void)batch, (void)device_budget_bytes;
    fail("{}: this quantlens was built without CUDA (configure with -DQUANTLENS_CUDA=ON)", what);
#endif
}

}  // namespace quantlens
