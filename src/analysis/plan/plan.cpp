#include "analysis/plan/plan.h"

#include <algorithm>
#include <limits>
#include <numeric>

#include "core/error.h"

namespace quantlens {
namespace {
constexpr double kInf = std::numeric_limits<double>::infinity();
}

KnapsackPlanner::KnapsackPlanner(PlanProblem problem, size_t max_states)
    : problem_(std::move(problem)) {
    QL_CHECK(!problem_.units.empty(), "plan: no tensors to allocate");
    base_bytes_ = problem_.fixed_bytes;
    uint64_t range = 0, g = 0;
    std::vector<uint64_t> smallest;
    for (const auto& u : problem_.units) {
        QL_CHECK(!u.options.empty(), "plan: tensor '{}' has no allowed type", u.name);
        QL_CHECK(u.options.size() <= 255, "plan: tensor '{}' has too many options", u.name);
        uint64_t lo = std::numeric_limits<uint64_t>::max(), hi = 0;
        for (const auto& o : u.options) lo = std::min(lo, o.bytes), hi = std::max(hi, o.bytes);
        smallest.push_back(lo);
        base_bytes_ += lo;
        range += hi - lo;
        for (const auto& o : u.options) g = std::gcd(g, o.bytes - lo);
    }
    grain_ = std::max<uint64_t>(g, 1);
    // Memory is units × states bytes for the choice table: keep it within ~256 MiB.
    const size_t cap = std::min(max_states, (size_t{256} << 20) / problem_.units.size());
    if (range / grain_ + 1 > cap) grain_ = (range + cap - 2) / (cap - 1);
    weight_.resize(problem_.units.size());
    uint64_t total = 0;
    for (size_t i = 0; i < problem_.units.size(); ++i) {
        uint32_t wmax = 0;
        for (const auto& o : problem_.units[i].options) {
            const uint64_t w =
                (o.bytes - smallest[i] + grain_ - 1) / grain_;  // round up: stays feasible
            weight_[i].push_back(static_cast<uint32_t>(w));
            wmax = std::max<uint32_t>(wmax, static_cast<uint32_t>(w));
        }
        total += wmax;
    }
    n_states_ = static_cast<size_t>(total) + 1;

    // best[c] = least error with Σ weights ≤ c over the units seen so far.
    std::vector<double> prev(n_states_, 0.0), cur(n_states_);
    choice_.assign(problem_.units.size(), std::vector<uint8_t>(n_states_, 0));
    for (size_t i = 0; i < problem_.units.size(); ++i) {
        const auto& opts = problem_.units[i].options;
        auto& ch = choice_[i];
        for (size_t c = 0; c < n_states_; ++c) {
            double best = kInf;
            uint8_t arg = 0;
            for (size_t o = 0; o < opts.size(); ++o) {
                const uint32_t w = weight_[i][o];
                if (w > c) continue;
                const double v = prev[c - w] + opts[o].error;
                if (v < best) best = v, arg = static_cast<uint8_t>(o);
            }
            cur[c] = best;
            ch[c] = arg;
        }
        std::swap(prev, cur);
    }
    best_ = std::move(prev);
}

uint64_t KnapsackPlanner::min_bytes() const {
    return base_bytes_;
}

uint64_t KnapsackPlanner::max_bytes() const {
    uint64_t total = problem_.fixed_bytes;
    for (const auto& u : problem_.units) {
        uint64_t hi = 0;
        for (const auto& o : u.options) hi = std::max(hi, o.bytes);
        total += hi;
    }
    return total;
}

PlanResult KnapsackPlanner::solve(uint64_t budget_bytes) const {
    QL_CHECK(budget_bytes >= base_bytes_,
             "plan: budget of {} bytes is below the smallest possible size {} bytes (every "
             "tensor at its smallest allowed type, plus {} bytes that are not quantized)",
             budget_bytes, base_bytes_, problem_.fixed_bytes);
    size_t c = static_cast<size_t>(
        std::min<uint64_t>((budget_bytes - base_bytes_) / grain_, n_states_ - 1));
    PlanResult r;
    r.grain_bytes = grain_;
    r.choice.resize(problem_.units.size());
    for (size_t i = problem_.units.size(); i-- > 0;) {
        const uint8_t o = choice_[i][c];
        r.choice[i] = o;
        QL_ASSERT(weight_[i][o] <= c);
        c -= weight_[i][o];
    }
    r.bytes = problem_.fixed_bytes;
    for (size_t i = 0; i < problem_.units.size(); ++i) {
        r.bytes += problem_.units[i].options[r.choice[i]].bytes;
        r.error += problem_.units[i].options[r.choice[i]].error;
    }
    QL_ASSERT(r.bytes <= budget_bytes);
    return r;
}

std::vector<FrontierPoint> KnapsackPlanner::frontier(size_t max_points) const {
    std::vector<size_t> steps;  // states where the optimum strictly improves
    for (size_t c = 0; c < n_states_; ++c)
        if (c == 0 || best_[c] < best_[c - 1]) steps.push_back(c);
    std::vector<FrontierPoint> points;
    const size_t stride =
        std::max<size_t>(1, (steps.size() + max_points - 1) / std::max<size_t>(max_points, 1));
    for (size_t k = 0; k < steps.size(); k += stride) {
        const PlanResult r = solve(base_bytes_ + steps[k] * grain_);
        points.push_back({r.bytes, r.error});
    }
    if (!steps.empty() && (steps.size() - 1) % stride != 0) {
        const PlanResult r = solve(base_bytes_ + steps.back() * grain_);
        points.push_back({r.bytes, r.error});
    }
    return points;
}

PlanResult plan_jump_knee(const PlanProblem& problem, const JumpKneeOptions& opt) {
    const size_t n = problem.units.size();
    QL_CHECK(n > 0, "plan: no tensors to allocate");
    // Statistical thresholds per option position (types are aligned by position).
    size_t n_pos = 0;
    for (const auto& u : problem.units) n_pos = std::max(n_pos, u.options.size());
    std::vector<double> q3(n_pos), iqr(n_pos), median(n_pos);
    for (size_t k = 0; k < n_pos; ++k) {
        std::vector<double> v;
        for (const auto& u : problem.units)
            if (k < u.options.size()) v.push_back(u.options[k].error);
        std::sort(v.begin(), v.end());
        auto q = [&](double f) {
            return v.empty() ? 0.0 : v[static_cast<size_t>(f * (v.size() - 1))];
        };
        q3[k] = q(0.75);
        median[k] = q(0.5);
        iqr[k] = q(0.75) - q(0.25);
    }
    std::vector<double> sensitivity(n);
    for (size_t i = 0; i < n; ++i) sensitivity[i] = problem.units[i].options.back().error;
    std::vector<double> sorted = sensitivity;
    std::sort(sorted.begin(), sorted.end(), std::greater<>());
    const size_t n_imp = static_cast<size_t>(opt.important_fraction * static_cast<double>(n));
    const double imp_cut = n_imp > 0 ? sorted[n_imp - 1] : kInf;

    PlanResult r;
    r.choice.resize(n);
    r.bytes = problem.fixed_bytes;
    for (size_t i = 0; i < n; ++i) {
        const auto& opts = problem.units[i].options;
        const bool important = sensitivity[i] >= imp_cut;
        const double rel = important ? opt.rel_jump_important : opt.rel_jump;
        const double k_iqr = important ? opt.iqr_k_important : opt.iqr_k;
        size_t chosen = 0;
        for (size_t k = 1; k < opts.size(); ++k) {
            const double prev = std::max(opts[k - 1].error, opt.noise_floor);
            const bool jump = opts[k].error / prev > rel && opts[k].error > opt.noise_floor;
            const bool outlier = opts[k].error > q3[k] + k_iqr * iqr[k] &&
                                 opts[k].error > opt.outlier_min_ratio * median[k] &&
                                 opts[k].error > opt.noise_floor;
            if (jump || outlier) break;
            chosen = k;
        }
        r.choice[i] = chosen;
        r.bytes += opts[chosen].bytes;
        r.error += opts[chosen].error;
    }
    return r;
}

PlanResult evaluate_choice(const PlanProblem& problem, const std::vector<size_t>& choice) {
    QL_CHECK(choice.size() == problem.units.size(), "plan: {} choices for {} units", choice.size(),
             problem.units.size());
    PlanResult r;
    r.choice = choice;
    r.bytes = problem.fixed_bytes;
    for (size_t u = 0; u < choice.size(); ++u) {
        const auto& opts = problem.units[u].options;
        QL_CHECK(choice[u] < opts.size(), "plan: unit '{}' has {} options, not option {}",
                 problem.units[u].name, opts.size(), choice[u]);
        r.bytes += opts[choice[u]].bytes;
        r.error += opts[choice[u]].error;
    }
    return r;
}

}  // namespace quantlens
