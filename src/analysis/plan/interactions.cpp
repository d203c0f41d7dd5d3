// The pairwise interaction correction: see interactions.h.
#include "analysis/plan/interactions.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>

#include "core/error.h"

namespace quantlens {
namespace {

double weight_of(const InteractionUnit& a, const InteractionUnit& b) {
    return 2.0 * std::sqrt(std::max(a.d, 0.0) * std::max(b.d, 0.0));
}

struct Candidate {
    size_t a, b;
    double w;
};

// Every pair with weight, by class, heaviest first (ties by index: deterministic).
std::map<std::string, std::vector<Candidate>> weighted_pairs(
    const std::vector<InteractionUnit>& units) {
    std::map<std::string, std::vector<Candidate>> by_class;
    for (size_t i = 0; i < units.size(); ++i)
        for (size_t j = i + 1; j < units.size(); ++j)
            if (const double w = weight_of(units[i], units[j]); w > 0)
                by_class[pair_class(units[i], units[j])].push_back({i, j, w});
    for (auto& [name, pairs] : by_class)
        std::sort(pairs.begin(), pairs.end(), [](const Candidate& x, const Candidate& y) {
            return std::tie(y.w, x.a, x.b) < std::tie(x.w, y.a, y.b);
        });
    return by_class;
}

}  // namespace

std::string pair_class(const InteractionUnit& a, const InteractionUnit& b) {
    if (a.layer < 0 || b.layer < 0) return "outside layers";
    return a.layer == b.layer ? "same layer" : "across layers";
}

std::vector<PairPick> sample_pairs(const std::vector<InteractionUnit>& units, int n_pairs) {
    QL_CHECK(n_pairs >= 1, "interactions: {} pairs requested; measure at least 1", n_pairs);
    const auto by_class = weighted_pairs(units);
    double total = 0;
    for (const auto& [name, pairs] : by_class)
        for (const Candidate& c : pairs) total += c.w;
    std::vector<PairPick> picks;
    for (const auto& [name, pairs] : by_class) {
        double weight = 0;
        for (const Candidate& c : pairs) weight += c.w;
        const int share = static_cast<int>(std::lround(n_pairs * weight / total));
        const int n = std::max(share, static_cast<int>(std::min<size_t>(2, pairs.size())));
        const double step = weight / n;
        double cumulative = 0;
        size_t k = 0;  // the next sample point is (k + ½)·step
        for (const Candidate& c : pairs) {
            cumulative += c.w;
            int hits = 0;
            while (static_cast<int>(k) < n && (static_cast<double>(k) + 0.5) * step < cumulative)
                ++hits, ++k;
            if (hits > 0) picks.push_back({c.a, c.b, hits});
        }
        // Rounding can leave the last point just past the sum: it belongs to the last pair.
        if (static_cast<int>(k) < n) {
            const Candidate& last = pairs.back();
            if (!picks.empty() && picks.back().a == last.a && picks.back().b == last.b)
                picks.back().hits += n - static_cast<int>(k);
            else
                picks.push_back({last.a, last.b, n - static_cast<int>(k)});
        }
    }
    return picks;
}

InteractionFit fit_interactions(const std::vector<InteractionUnit>& units,
                                const std::vector<PairResult>& pairs) {
    InteractionFit fit;
    for (const InteractionUnit& u : units) fit.raw_sum += std::max(u.d, 0.0);
    struct Sums {
        double rho_hits = 0, rho2_hits = 0;
        int64_t hits = 0, distinct = 0;
    };
    std::map<std::string, Sums> measured;
    for (const PairResult& p : pairs) {
        QL_CHECK(p.pick.a < units.size() && p.pick.b < units.size() && p.pick.a != p.pick.b,
                 "interactions: pair ({}, {}) is not a pair of the {} units", p.pick.a, p.pick.b,
                 units.size());
        const InteractionUnit& a = units[p.pick.a];
        const InteractionUnit& b = units[p.pick.b];
        const double w = weight_of(a, b);
        QL_CHECK(w > 0, "interactions: pair '{}' + '{}' has no weight (a ΔKLD of 0)", a.name,
                 b.name);
        const double rho = (p.kld - std::max(a.d, 0.0) - std::max(b.d, 0.0)) / w;
        Sums& s = measured[pair_class(a, b)];
        s.rho_hits += rho * p.pick.hits;
        s.rho2_hits += rho * rho * p.pick.hits;
        s.hits += p.pick.hits;
        s.distinct += 1;
    }
    for (const auto& [name, candidates] : weighted_pairs(units)) {
        PairClassFit c;
        c.name = name;
        c.n_pairs = static_cast<int64_t>(candidates.size());
        for (const Candidate& x : candidates) c.weight += x.w;
        const auto it = measured.find(name);
        QL_CHECK(it != measured.end(),
                 "interactions: no measured pair in class '{}' ({} pairs, Σ 2√(d_i d_j) = {:.6g}); "
                 "its cross term cannot be estimated",
                 name, c.n_pairs, c.weight);
        c.n_measured = it->second.distinct;
        const double n = static_cast<double>(it->second.hits);
        c.rho = it->second.rho_hits / n;
        c.cross = c.rho * c.weight;
        const double var = (it->second.rho2_hits - n * c.rho * c.rho) / (n - 1);  // NaN at n = 1
        c.rho_se = n > 1 ? std::sqrt(std::max(var, 0.0) / n) : std::nan("");
        c.cross_se = c.rho_se * c.weight;
        fit.cross += c.cross;
        fit.cross_se += c.cross_se * c.cross_se;
        fit.classes.push_back(c);
    }
    fit.cross_se = std::sqrt(fit.cross_se);
    fit.corrected = fit.raw_sum + fit.cross;
    return fit;
}

}  // namespace quantlens
