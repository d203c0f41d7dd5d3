// AWQ diagnostics; definitions in awq.h.
#include "analysis/studies/awq.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "core/parallel.h"
#include "engine/kernels.h"

namespace quantlens {

std::string module_family(const std::string& name) {
    static const std::pair<const char*, const char*> kFamilies[] = {
        {".attn_q.", "q"},
        {".attn_k.", "k"},
        {".attn_v.", "v"},
        {".attn_output.", "o"},
        {".attn_qkv.", "qkv"},  // Phi-3's fused q/k/v
        {".ffn_gate.", "gate"},
        {".ffn_up.", "up"},
        {".ffn_down.", "down"},
        {".ffn_gate_exps.", "gate"},
        {".ffn_up_exps.", "up"},
        {".ffn_down_exps.", "down"},
        {".ffn_gate_inp.", "router"},
    };
    for (const auto& [key, fam] : kFamilies)
        if (name.find(key) != std::string::npos) return fam;
    return name;
}

void rtn_quantize(const float* src, float* dst, int64_t rows, int64_t cols, int bits, int64_t group,
                  double clip) {
    QL_ASSERT(bits >= 1 && bits <= 16 && group > 0 && clip > 0);
    const double qmax = std::ldexp(1.0, bits) - 1;
    parallel_for(static_cast<size_t>(rows), [&](size_t r0, size_t r1) {
        for (size_t r = r0; r < r1; ++r) {
            const float* s = src + r * static_cast<size_t>(cols);
            float* d = dst + r * static_cast<size_t>(cols);
            for (int64_t j0 = 0; j0 < cols; j0 += group) {
                const int64_t j1 = std::min(cols, j0 + group);
                double lo = s[j0], hi = s[j0];
                for (int64_t j = j0; j < j1; ++j) {
                    lo = std::min<double>(lo, s[j]);
                    hi = std::max<double>(hi, s[j]);
                }
                lo *= clip;
                hi *= clip;
                const double step = (hi - lo) / qmax;
                if (!(step > 0)) {
                    for (int64_t j = j0; j < j1; ++j)
                        d[j] = static_cast<float>(std::clamp<double>(s[j], lo, hi));
                    continue;
                }
                const double zero = std::round(-lo / step);
                for (int64_t j = j0; j < j1; ++j) {
                    const double q = std::clamp(std::round(s[j] / step) + zero, 0.0, qmax);
                    d[j] = static_cast<float>((q - zero) * step);
                }
            }
        }
    });
}

namespace {

// max over channels / mean over channels of a per-channel maximum.
double max_mean_ratio(const std::vector<double>& v) {
    if (v.empty()) return 0;
    double mx = 0, sum = 0;
    for (double x : v) {
        mx = std::max(mx, x);
        sum += x;
    }
    return sum > 0 ? mx * static_cast<double>(v.size()) / sum : 0;
}

// Output error of an approximation wq of w on the sampled inputs; y = x·wᵀ precomputed.
class OutputError {
  public:
    OutputError(const float* w, int64_t rows, int64_t cols, const float* x, int64_t n)
        : rows_(rows),
          cols_(cols),
          x_(x),
          n_(n),
          y_(static_cast<size_t>(n * rows)),
          yq_(y_.size()) {
        if (n_ > 0) matmul_forward(y_.data(), x_, w, nullptr, n_, cols_, rows_);
        for (float v : y_) norm2_ += static_cast<double>(v) * v;
    }
    double operator()(const float* wq) {
        if (n_ == 0 || norm2_ <= 0) return 0;
        matmul_forward(yq_.data(), x_, wq, nullptr, n_, cols_, rows_);
        double e2 = 0;
        for (size_t i = 0; i < y_.size(); ++i) {
            const double d = static_cast<double>(y_[i]) - yq_[i];
            e2 += d * d;
        }
        return std::sqrt(e2 / norm2_);
    }

  private:
    int64_t rows_, cols_;
    const float* x_;
    int64_t n_;
    std::vector<float> y_, yq_;
    double norm2_ = 0;
};

double rmse(const float* a, const float* b, int64_t n) {
    double e2 = 0;
    for (int64_t i = 0; i < n; ++i) {
        const double d = static_cast<double>(a[i]) - b[i];
        e2 += d * d;
    }
    return n ? std::sqrt(e2 / static_cast<double>(n)) : 0;
}

}  // namespace

std::vector<double> awq_scales(const float* magnitude, int64_t cols, double alpha) {
    std::vector<double> scale(static_cast<size_t>(cols));
    double smax = 0, smin = INFINITY;
    for (size_t j = 0; j < scale.size(); ++j) {
        scale[j] = std::pow(std::max<double>(magnitude[j], 1e-4), alpha);
        smax = std::max(smax, scale[j]);
        smin = std::min(smin, scale[j]);
    }
    const double norm = std::sqrt(smax * smin);
    for (double& v : scale) v /= norm;
    return scale;
}

AwqTensor awq_diagnose(const std::string& name, const float* w, int64_t R, int64_t C,
                       const float* x, int64_t n, const float* mean_abs, const float* max_abs,
                       const AwqOptions& o) {
    QL_CHECK(R > 0 && C > 0, "tensor '{}': empty weight", name);
    QL_CHECK(!o.alphas.empty() && o.alphas.front() == 0,
             "AWQ: the α grid must start at 0 (plain round-to-nearest)");
    engine_init_blas();
    AwqTensor t;
    t.name = name;
    t.family = module_family(name);
    t.rows = R;
    t.cols = C;
    t.n_samples = n;
    const auto CC = static_cast<size_t>(C);
    const size_t N = static_cast<size_t>(R) * CC;

    // Importance |W|·E|x| and its concentration.
    std::vector<double> col_abs(CC, 0.0), col_max(CC, 0.0);
    for (int64_t r = 0; r < R; ++r)
        for (size_t j = 0; j < CC; ++j) {
            const double a = std::fabs(w[static_cast<size_t>(r) * CC + j]);
            col_abs[j] += a;
            col_max[j] = std::max(col_max[j], a);
        }
    t.importance.resize(CC);
    double total = 0;
    for (size_t j = 0; j < CC; ++j) {
        t.importance[j] = static_cast<float>(mean_abs[j] * col_abs[j]);
        total += t.importance[j];
    }
    {
        std::vector<float> sorted = t.importance;
        std::sort(sorted.begin(), sorted.end(), std::greater<>());
        const size_t top = std::max<size_t>(1, (CC + 99) / 100);
        double s = 0;
        for (size_t j = 0; j < top; ++j) s += sorted[j];
        t.top1_share = total > 0 ? s / total : 0;
    }

    OutputError out_err(w, R, C, x, n);
    std::vector<float> ws(N), wq(N);

    // Scale search per bit width.
    for (int bits : o.bits) {
        AwqSearch s;
        s.bits = bits;
        for (double alpha : o.alphas) {
            const std::vector<double> sc = awq_scales(mean_abs, C, alpha);
            for (int64_t r = 0; r < R; ++r)
                for (size_t j = 0; j < CC; ++j)
                    ws[static_cast<size_t>(r) * CC + j] =
                        static_cast<float>(w[static_cast<size_t>(r) * CC + j] * sc[j]);
            rtn_quantize(ws.data(), wq.data(), R, C, bits, o.group);
            for (int64_t r = 0; r < R; ++r)
                for (size_t j = 0; j < CC; ++j)
                    wq[static_cast<size_t>(r) * CC + j] =
                        static_cast<float>(wq[static_cast<size_t>(r) * CC + j] / sc[j]);
            s.err_by_alpha.push_back(out_err(wq.data()));
        }
        s.err_plain = s.err_by_alpha.front();
        const auto best = std::min_element(s.err_by_alpha.begin(), s.err_by_alpha.end());
        s.err_best = *best;
        s.best_alpha = o.alphas[static_cast<size_t>(best - s.err_by_alpha.begin())];
        t.search.push_back(std::move(s));
    }

    // SmoothQuant scales.
    {
        std::vector<double> sq(CC), act_before(CC), act_after(CC), w_after(CC, 0.0);
        for (size_t j = 0; j < CC; ++j) {
            const double m = std::max<double>(max_abs[j], 1e-5);
            const double wm = std::max(col_max[j], 1e-5);
            sq[j] = std::pow(m, o.smooth_alpha) / std::pow(wm, 1 - o.smooth_alpha);
            act_before[j] = max_abs[j];
            act_after[j] = max_abs[j] / sq[j];
            w_after[j] = col_max[j] * sq[j];
        }
        t.sq_act_ratio_before = max_mean_ratio(act_before);
        t.sq_act_ratio_after = max_mean_ratio(act_after);
        t.sq_w_ratio_before = max_mean_ratio(col_max);
        t.sq_w_ratio_after = max_mean_ratio(w_after);
        std::vector<double> sorted = sq;
        std::sort(sorted.begin(), sorted.end());
        t.sq_scale_min = sorted.front();
        t.sq_scale_median = sorted[sorted.size() / 2];
        t.sq_scale_max = sorted.back();
    }

    // Group-size study and clip sweep at study_bits.
    for (int64_t g : o.group_sizes) {
        rtn_quantize(w, wq.data(), R, C, o.study_bits, g);
        t.group_study.push_back({g, rmse(w, wq.data(), static_cast<int64_t>(N)), out_err(wq.data()),
                                 o.study_bits + 32.0 / static_cast<double>(g)});
    }
    for (double r : o.clip_ratios) {
        rtn_quantize(w, wq.data(), R, C, o.study_bits, o.group, r);
        t.clip_sweep.push_back(
            {r, rmse(w, wq.data(), static_cast<int64_t>(N)), out_err(wq.data())});
    }
    return t;
}

std::vector<AwqFamilySummary> summarize_families(const std::vector<AwqTensor>& tensors) {
    std::map<std::string, AwqFamilySummary> by;
    for (const AwqTensor& t : tensors) {
        AwqFamilySummary& s = by[t.family];
        s.family = t.family;
        ++s.n_tensors;
        s.top1_share += t.top1_share;
        for (const AwqSearch& a : t.search) {
            s.err_plain[a.bits] += a.err_plain;
            s.err_best[a.bits] += a.err_best;
            s.reduction[a.bits] += a.reduction();
            s.best_alpha[a.bits] += a.best_alpha;
        }
    }
    // Conventional order q k v o gate up down, then the rest by name.
    static const std::vector<std::string> kOrder = {"q", "k", "v", "o", "gate", "up", "down"};
    std::vector<AwqFamilySummary> out;
    auto finish = [&](AwqFamilySummary s) {
        const auto n = static_cast<double>(s.n_tensors);
        s.top1_share /= n;
        for (auto* m : {&s.err_plain, &s.err_best, &s.reduction, &s.best_alpha})
            for (auto& [b, v] : *m) v /= n;
        out.push_back(std::move(s));
    };
    for (const auto& f : kOrder)
        if (by.count(f)) finish(by.at(f));
    for (const auto& [f, s] : by)
        if (std::find(kOrder.begin(), kOrder.end(), f) == kOrder.end()) finish(s);
    return out;
}

// The group-size and clipping rows' JSON: their fields under their own names.
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(AwqTensor::GroupRow, group, rmse, out_err, eff_bits)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(AwqTensor::ClipRow, ratio, rmse, out_err)

nlohmann::json to_json(const AwqTensor& t) {
    nlohmann::json search = nlohmann::json::array();
    for (const AwqSearch& s : t.search)
        search.push_back({{"bits", s.bits},
                          {"err_by_alpha", s.err_by_alpha},
                          {"err_plain", s.err_plain},
                          {"err_best", s.err_best},
                          {"best_alpha", s.best_alpha},
                          {"reduction", s.reduction()}});
    nlohmann::json groups = t.group_study;
    nlohmann::json clips = t.clip_sweep;
    return {{"name", t.name},
            {"family", t.family},
            {"rows", t.rows},
            {"cols", t.cols},
            {"n_samples", t.n_samples},
            {"top1_share", t.top1_share},
            {"search", std::move(search)},
            {"smoothquant",
             {{"scale_min", t.sq_scale_min},
              {"scale_median", t.sq_scale_median},
              {"scale_max", t.sq_scale_max},
              {"act_ratio_before", t.sq_act_ratio_before},
              {"act_ratio_after", t.sq_act_ratio_after},
              {"w_ratio_before", t.sq_w_ratio_before},
              {"w_ratio_after", t.sq_w_ratio_after}}},
            {"group_study", std::move(groups)},
            {"clip_sweep", std::move(clips)}};
}

nlohmann::json to_json(const AwqFamilySummary& s) {
    nlohmann::json bits = nlohmann::json::object();
    for (const auto& [b, v] : s.reduction)
        bits[std::to_string(b)] = {{"err_plain", s.err_plain.at(b)},
                                   {"err_best", s.err_best.at(b)},
                                   {"reduction", v},
                                   {"best_alpha", s.best_alpha.at(b)}};
    return {{"family", s.family},
            {"n_tensors", s.n_tensors},
            {"top1_share", s.top1_share},
            {"bits", std::move(bits)}};
}

}  // namespace quantlens
