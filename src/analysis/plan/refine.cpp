// `plan --refine N`: see refine.h.
#include "analysis/plan/refine.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace quantlens {
namespace {

// The options of a unit next to `current` on its Pareto frontier of (bytes, error alone): the
// cheapest one that is dearer with less error, and the dearest one that is cheaper.
std::vector<size_t> neighbours(const PlanUnit& unit, size_t current) {
    const auto& opts = unit.options;
    std::vector<size_t> order(opts.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        return opts[a].bytes != opts[b].bytes ? opts[a].bytes < opts[b].bytes
                                              : opts[a].error < opts[b].error;
    });
    std::vector<size_t> pareto;  // bytes ascending, error strictly descending
    for (size_t i : order)
        if (pareto.empty() || opts[i].error < opts[pareto.back()].error) pareto.push_back(i);
    std::vector<size_t> out;
    const PlanOption& c = opts[current];
    for (size_t i : pareto)
        if (opts[i].bytes > c.bytes && opts[i].error < c.error) {
            out.push_back(i);
            break;
        }
    for (auto it = pareto.rbegin(); it != pareto.rend(); ++it)
        if (opts[*it].bytes < c.bytes) {
            out.push_back(*it);
            break;
        }
    return out;
}

}  // namespace

RefineResult refine_choice(const PlanProblem& problem, std::vector<size_t> choice, uint64_t budget,
                           int rounds, const MeasureChoices& measure) {
    QL_CHECK(rounds >= 1, "plan --refine {}: give a number of rounds (1 or more)", rounds);
    const size_t n = problem.units.size();
    const uint64_t bytes = evaluate_choice(problem, choice).bytes;  // refuses a bad choice
    QL_CHECK(bytes <= budget, "refine: the plan's {} bytes exceed its budget of {}", bytes, budget);

    RefineResult out;
    out.start_kld = out.kld = measure({choice}, "the plan").at(0);
    for (int round = 1; round <= rounds; ++round) {
        // Every single move from the current mix, measured in it.
        std::vector<std::vector<size_t>> candidates;
        std::vector<std::pair<size_t, size_t>> move_of;  // (unit, option) per candidate
        for (size_t u = 0; u < n; ++u)
            for (size_t o : neighbours(problem.units[u], choice[u])) {
                candidates.push_back(choice);
                candidates.back()[u] = o;
                move_of.push_back({u, o});
            }
        if (candidates.empty()) break;
        const std::vector<double> kld = measure(candidates, "single moves");

        // The linearized problem: per unit, stay (linear option 0, cost 0) or one of its moves.
        PlanProblem lin;
        lin.fixed_bytes = problem.fixed_bytes;
        std::vector<std::vector<size_t>> option_of(n);  // [unit][linear option] → option
        for (size_t u = 0; u < n; ++u) {
            lin.units.push_back({problem.units[u].name, {problem.units[u].options[choice[u]]}});
            lin.units[u].options[0].error = 0;
            option_of[u].push_back(choice[u]);
        }
        for (size_t k = 0; k < candidates.size(); ++k) {
            const auto [u, o] = move_of[k];
            PlanOption opt = problem.units[u].options[o];
            opt.error = kld[k] - out.kld;  // may be negative: the knapsack only compares sums
            lin.units[u].options.push_back(opt);
            option_of[u].push_back(o);
        }
        double penalty = 0;
        int64_t allowed = std::numeric_limits<int64_t>::max();
        bool accepted = false;
        for (int attempt = 0; attempt < 4 && !accepted; ++attempt) {
            std::vector<size_t> x;
            int64_t n_moves = 0;
            double predicted = out.kld;
            for (int grow = 0; grow < 64; ++grow) {
                PlanProblem p = lin;
                for (auto& unit : p.units)
                    for (size_t k = 1; k < unit.options.size(); ++k)
                        unit.options[k].error += penalty;
                const PlanResult r = KnapsackPlanner(p).solve(budget);
                x = choice;
                n_moves = 0;
                predicted = out.kld;
                for (size_t u = 0; u < n; ++u) {
                    x[u] = option_of[u][r.choice[u]];
                    n_moves += r.choice[u] != 0;
                    predicted += lin.units[u].options[r.choice[u]].error;
                }
                if (n_moves <= allowed) break;
                penalty = penalty > 0 ? 2 * penalty : std::max(out.kld, 1e-12) * 1e-4;
            }
            if (n_moves == 0 || predicted >= out.kld) break;  // no gain the linear model sees
            RefineStep step{round,     static_cast<int64_t>(candidates.size()),  n_moves,
                            predicted, measure({x}, "the re-planned mix").at(0), false};
            step.accepted = step.measured < out.kld;
            out.steps.push_back(step);
            if (step.accepted) {
                choice = x;
                out.kld = step.measured;
                accepted = true;
            } else {
                allowed = n_moves / 2;
                if (allowed == 0) break;
            }
        }
        if (!accepted) break;
    }
    out.choice = choice;
    return out;
}

}  // namespace quantlens
