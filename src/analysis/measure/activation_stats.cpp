// Activation statistics from engine hooks; definitions in activation_stats.h.
#include "analysis/measure/activation_stats.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/parallel.h"

namespace quantlens {

double excess_kurtosis_from_sums(double n, double s1, double s2, double s3, double s4) {
    if (n <= 0) return 0;
    const double mu = s1 / n, e2 = s2 / n, e3 = s3 / n, e4 = s4 / n;
    const double m2 = e2 - mu * mu;
    const double m4 = e4 - 4 * mu * e3 + 6 * mu * mu * e2 - 3 * mu * mu * mu * mu;
    // A variance at rounding level of the raw moments carries no shape information.
    if (!(m2 > 1e-12 * std::max(e2, 1e-300))) return 0;
    return m4 / (m2 * m2) - 3;
}

ChannelMoments::ChannelMoments(int64_t cols)
    : n_cols(cols),
      s1(static_cast<size_t>(cols)),
      s2(static_cast<size_t>(cols)),
      s3(static_cast<size_t>(cols)),
      s4(static_cast<size_t>(cols)),
      sabs(static_cast<size_t>(cols)),
      max_abs(static_cast<size_t>(cols)) {}

std::pair<double, double> ChannelMoments::mean_sigma() const {
    const double n = static_cast<double>(n_rows) * static_cast<double>(n_cols);
    if (n <= 0) return {0, 0};
    double a = 0, b = 0;
    for (int64_t j = 0; j < n_cols; ++j) {
        a += s1[static_cast<size_t>(j)];
        b += s2[static_cast<size_t>(j)];
    }
    const double mu = a / n;
    return {mu, std::sqrt(std::max(0.0, b / n - mu * mu))};
}

void ChannelMoments::add(const float* x, int64_t rows) {
    if (rows <= 0) return;
    // σ for the 6σ count: this batch's values included, so the first batch has one too.
    double mu = 0, sigma = 0;
    {
        const double n = static_cast<double>(n_rows + rows) * static_cast<double>(n_cols);
        double a = 0, b = 0;
        for (int64_t j = 0; j < n_cols; ++j) {
            a += s1[static_cast<size_t>(j)];
            b += s2[static_cast<size_t>(j)];
        }
        // Row sums in parallel, added in row order: the same doubles as a serial loop.
        std::vector<double> ra(static_cast<size_t>(rows)), rb(static_cast<size_t>(rows));
        parallel_for(static_cast<size_t>(rows), [&](size_t r0, size_t r1) {
            for (size_t r = r0; r < r1; ++r) {
                const float* row = x + static_cast<int64_t>(r) * n_cols;
                double sa = 0, sb = 0;
                for (int64_t j = 0; j < n_cols; ++j) {
                    sa += row[j];
                    sb += static_cast<double>(row[j]) * row[j];
                }
                ra[r] = sa;
                rb[r] = sb;
            }
        });
        for (int64_t r = 0; r < rows; ++r) {
            a += ra[static_cast<size_t>(r)];
            b += rb[static_cast<size_t>(r)];
        }
        mu = a / n;
        sigma = std::sqrt(std::max(0.0, b / n - mu * mu));
    }
    const double thr = 6 * sigma;
    constexpr int64_t kBlock = 32;
    const int64_t n_blocks = (n_cols + kBlock - 1) / kBlock;
    std::vector<int64_t> beyond(static_cast<size_t>(n_blocks), 0);
    parallel_for(static_cast<size_t>(n_blocks), [&](size_t b0, size_t b1) {
        for (size_t blk = b0; blk < b1; ++blk) {
            const int64_t j0 = static_cast<int64_t>(blk) * kBlock;
            const int64_t w = std::min(kBlock, n_cols - j0);
            double a1[kBlock] = {}, a2[kBlock] = {}, a3[kBlock] = {}, a4[kBlock] = {},
                   aa[kBlock] = {};
            float mx[kBlock] = {};
            int64_t cnt = 0;
            for (int64_t r = 0; r < rows; ++r) {
                const float* row = x + r * n_cols + j0;
                for (int64_t j = 0; j < w; ++j) {
                    const double v = row[j];
                    const double v2 = v * v;
                    a1[j] += v;
                    a2[j] += v2;
                    a3[j] += v2 * v;
                    a4[j] += v2 * v2;
                    aa[j] += std::fabs(v);
                    mx[j] = std::max(mx[j], std::fabs(row[j]));
                    cnt += std::fabs(v - mu) > thr ? 1 : 0;
                }
            }
            for (int64_t j = 0; j < w; ++j) {
                const auto c = static_cast<size_t>(j0 + j);
                s1[c] += a1[j];
                s2[c] += a2[j];
                s3[c] += a3[j];
                s4[c] += a4[j];
                sabs[c] += aa[j];
                max_abs[c] = std::max(max_abs[c], mx[j]);
            }
            beyond[blk] = cnt;
        }
    });
    for (int64_t c : beyond) n_beyond += c;
    n_rows += rows;
}

int64_t TensorActivationStats::total_tokens() const {
    int64_t t = 0;
    for (int64_t n : tokens) t += n;
    return t;
}

EngineHook ActivationCollector::hook() {
    return [this](const HookEvent& e) { on_event(e); };
}

void ActivationCollector::set_capture(int64_t max_rows, int64_t stride) {
    QL_ASSERT(max_rows >= 0 && stride >= 1);
    capture_rows_ = max_rows;
    capture_stride_ = stride;
}

void ActivationCollector::on_shared_input(const HookEvent& e, std::span<const std::string> also) {
    on_event(e);
    const auto it = mats_.find(*e.tensor);
    if (it == mats_.end()) return;  // not a wanted tensor: neither are its siblings
    for (const std::string& name : also) mats_[name] = it->second;
}

void ActivationCollector::on_event(const HookEvent& e) {
    if (e.kind == HookEvent::Kind::LayerOutput) {
        LayerHiddenStats& s = layers_[e.layer];
        s.layer = e.layer;
        double sum = 0;
        float mx = s.max_abs > 0 ? static_cast<float>(s.max_abs) : 0.0f;
        int64_t arg = s.max_channel;
        const int64_t n = e.rows * e.cols;
        for (int64_t i = 0; i < n; ++i) {
            const float a = std::fabs(e.data[i]);
            sum += a;
            if (a > mx) {
                mx = a;
                arg = i % e.cols;
            }
        }
        const double total = s.mean_abs * static_cast<double>(s.n_tokens * e.cols) + sum;
        s.n_tokens += e.rows;
        s.mean_abs = total / static_cast<double>(s.n_tokens * e.cols);
        s.max_abs = mx;
        s.max_channel = arg;
        return;
    }
    if (e.kind != HookEvent::Kind::LinearInput || e.tensor == nullptr) return;
    const std::string& name = *e.tensor;
    const bool wanted = name.rfind("blk.", 0) == 0 || (include_output_ && e.layer < 0);
    if (!wanted) return;
    Tensor& t = mats_[name];
    if (t.mats.empty()) {
        t.layer = e.layer;
        t.n_cols = e.cols;
    }
    QL_CHECK(t.n_cols == e.cols, "tensor '{}': input rows of {} and {} values in one run", name,
             t.n_cols, e.cols);
    QL_CHECK(e.expert < 0 || n_experts_ == 0 || e.expert < n_experts_ ||
                 name.find("_exps.") == std::string::npos,
             "tensor '{}': expert {} outside the model's {} experts", name, e.expert, n_experts_);
    auto it = t.mats.find(e.expert);
    if (it == t.mats.end())
        it = t.mats.emplace(e.expert, Matrix{ChannelMoments(e.cols), {}, 0}).first;
    Matrix& m = it->second;
    m.moments.add(e.data, e.rows);
    if (capture_rows_ > 0) {
        for (int64_t r = 0; r < e.rows; ++r) {
            const int64_t have = static_cast<int64_t>(m.sample.size()) / e.cols;
            if (have >= capture_rows_) break;
            if ((m.rows_seen + r) % capture_stride_ == 0)
                m.sample.insert(m.sample.end(), e.data + r * e.cols, e.data + (r + 1) * e.cols);
        }
    }
    m.rows_seen += e.rows;
}

void ActivationCollector::adopt_moments(const std::string& tensor, int layer,
                                        ChannelMoments moments, int expert) {
    const bool wanted = tensor.rfind("blk.", 0) == 0 || (include_output_ && layer < 0);
    if (!wanted) return;
    Tensor& t = mats_[tensor];
    QL_CHECK(!t.mats.count(expert), "tensor '{}' (expert {}): input statistics were gathered twice",
             tensor, expert);
    if (t.mats.empty()) {
        t.layer = layer;
        t.n_cols = moments.n_cols;
    }
    QL_CHECK(t.n_cols == moments.n_cols, "tensor '{}': input rows of {} and {} values in one run",
             tensor, t.n_cols, moments.n_cols);
    t.mats.emplace(expert, Matrix{std::move(moments), {}, 0});
}

void ActivationCollector::adopt_layer(const LayerHiddenStats& stats) {
    layers_[stats.layer] = stats;
}

const std::vector<float>& ActivationCollector::captured(const std::string& tensor,
                                                        int expert) const {
    static const std::vector<float> kEmpty;
    const auto t = mats_.find(tensor);
    if (t == mats_.end()) return kEmpty;
    const auto m = t->second.mats.find(expert);
    return m == t->second.mats.end() ? kEmpty : m->second.sample;
}

std::vector<TensorActivationStats> ActivationCollector::tensor_stats() const {
    std::vector<TensorActivationStats> out;
    for (const auto& [name, t] : mats_) {
        TensorActivationStats s;
        s.name = name;
        s.layer = t.layer;
        s.n_cols = t.n_cols;
        const bool stacked = t.mats.begin()->first >= 0;
        // Stacked experts count every expert (rarely routed ones may have no rows); other
        // stacked tensors (MLA's per-head attn_k_b / attn_v_b) their matrices seen.
        const bool experts = name.find("_exps.") != std::string::npos;
        s.n_mat = !stacked  ? 1
                  : experts ? std::max<int64_t>(n_experts_, t.mats.rbegin()->first + 1)
                            : t.mats.rbegin()->first + 1;
        const auto C = static_cast<size_t>(t.n_cols);
        s.tokens.assign(static_cast<size_t>(s.n_mat), 0);
        s.importance.assign(static_cast<size_t>(s.n_mat) * C, 0.0f);
        std::vector<double> c1(C), c2(C), c3(C), c4(C), ca(C);
        s.max_abs.assign(C, 0.0f);
        int64_t n_rows = 0, n_beyond = 0;
        for (const auto& [expert, m] : t.mats) {
            const auto& mm = m.moments;
            const size_t mat = expert < 0 ? 0 : static_cast<size_t>(expert);
            s.tokens[mat] = mm.n_rows;
            n_rows += mm.n_rows;
            n_beyond += mm.n_beyond;
            for (size_t j = 0; j < C; ++j) {
                if (mm.n_rows > 0)
                    s.importance[mat * C + j] =
                        static_cast<float>(mm.s2[j] / static_cast<double>(mm.n_rows));
                c1[j] += mm.s1[j];
                c2[j] += mm.s2[j];
                c3[j] += mm.s3[j];
                c4[j] += mm.s4[j];
                ca[j] += mm.sabs[j];
                s.max_abs[j] = std::max(s.max_abs[j], mm.max_abs[j]);
            }
        }
        const auto n = static_cast<double>(n_rows);
        s.mean_abs.assign(C, 0.0f);
        double t1 = 0, t2 = 0, t3 = 0, t4 = 0, mean_max = 0;
        std::vector<double> kurt(C);
        for (size_t j = 0; j < C; ++j) {
            if (n > 0) s.mean_abs[j] = static_cast<float>(ca[j] / n);
            t1 += c1[j];
            t2 += c2[j];
            t3 += c3[j];
            t4 += c4[j];
            kurt[j] = excess_kurtosis_from_sums(n, c1[j], c2[j], c3[j], c4[j]);
            mean_max += s.max_abs[j];
            s.max_abs_all = std::max<double>(s.max_abs_all, s.max_abs[j]);
        }
        const double nv = n * static_cast<double>(C);
        if (nv > 0) {
            s.mean = t1 / nv;
            s.variance = std::max(0.0, t2 / nv - s.mean * s.mean);
            s.excess_kurtosis = excess_kurtosis_from_sums(nv, t1, t2, t3, t4);
            s.frac_beyond_6sigma = static_cast<double>(n_beyond) / nv;
        }
        std::sort(kurt.begin(), kurt.end());
        if (!kurt.empty()) {
            s.channel_kurtosis_median = kurt[kurt.size() / 2];
            s.channel_kurtosis_max = kurt.back();
        }
        mean_max /= static_cast<double>(std::max<size_t>(C, 1));
        for (size_t j = 0; j < C; ++j)
            if (s.max_abs[j] > 6 * mean_max) s.outlier_channels.push_back(static_cast<int64_t>(j));
        out.push_back(std::move(s));
    }
    return out;
}

std::vector<LayerHiddenStats> ActivationCollector::layer_stats() const {
    std::vector<LayerHiddenStats> out;
    for (const auto& [l, s] : layers_) out.push_back(s);
    return out;
}

std::vector<ImatrixEntry> ActivationCollector::imatrix_entries() const {
    std::vector<ImatrixEntry> out;
    for (const TensorActivationStats& s : tensor_stats()) {
        ImatrixEntry e;
        e.name = s.name;
        e.n_values = s.n_cols * s.n_mat;
        e.counts = s.tokens;
        e.values = s.importance;
        out.push_back(std::move(e));
    }
    return out;
}

}  // namespace quantlens
