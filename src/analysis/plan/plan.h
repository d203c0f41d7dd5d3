// Mixed-precision allocation: one type per tensor.
//
// Budget mode solves the multiple-choice knapsack problem exactly by dynamic programming
// over size: minimize Σ_u e(u, t_u) subject to Σ_u bytes(u, t_u) ≤ budget − fixed_bytes.
// Sizes are shifted by each unit's smallest option and divided by their greatest common
// divisor, which keeps the DP exact for real models (tensor sizes share large factors).
// If the state count would still exceed `max_states`, sizes are rounded UP to a coarser
// grain: the result always fits the budget and is optimal on that grain (the slack is
// reported as `grain_bytes`). One DP pass yields the best error at every size, so the
// whole Pareto frontier comes for free.
//
// Jump-knee mode (`plan --knee`, the seed's method) walks each unit's types from high to low
// bits and stops before the first disproportionate jump in error (not the report's chord
// knee, web/src/report.js, which marks the point farthest below a curve's chord):
//   relative: e(next) / max(e(current), noise_floor) > rel_jump   (3.0; 2.0 if important)
//   statistical: e(next) > Q3 + k·IQR of all units' errors at that type
//                (k = 1.5; 0.5 if important) and e(next) > 2 × that type's median error
//                (so a tight distribution does not flag its own largest member)
// "Important" units are the top `important_fraction` (10 %) by error at the lowest type.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/ggml_type.h"

namespace quantlens {

struct PlanOption {
    GgmlType type;
    uint64_t bytes = 0;
    double error = 0;  // predicted contribution to the total (e.g. ΔKLD)
};

struct PlanUnit {
    std::string name;
    std::vector<PlanOption> options;  // at least one
};

struct PlanProblem {
    std::vector<PlanUnit> units;
    uint64_t fixed_bytes = 0;  // everything not chosen here (norms, metadata)
};

struct PlanResult {
    std::vector<size_t> choice;  // option index per unit
    uint64_t bytes = 0;          // including fixed_bytes
    double error = 0;
    uint64_t grain_bytes = 1;
};

struct FrontierPoint {
    uint64_t bytes = 0;  // including fixed_bytes
    double error = 0;
};

class KnapsackPlanner {
  public:
    explicit KnapsackPlanner(PlanProblem problem, size_t max_states = size_t{1} << 22);

    uint64_t min_bytes() const;  // smallest achievable total
    uint64_t max_bytes() const;  // largest total (every unit at its biggest option)
    // Optimal choice within budget_bytes; throws Error if the budget is below min_bytes().
    PlanResult solve(uint64_t budget_bytes) const;
    // Pareto-optimal (size, error) points from min to max size, at most max_points.
    std::vector<FrontierPoint> frontier(size_t max_points = 200) const;
    const PlanProblem& problem() const { return problem_; }

  private:
    PlanProblem problem_;
    uint64_t base_bytes_ = 0;  // fixed + Σ smallest option
    uint64_t grain_ = 1;
    std::vector<std::vector<uint32_t>> weight_;  // [unit][option] in grains above the smallest
    size_t n_states_ = 0;
    std::vector<double> best_;                  // [state] best error at ≤ state grains
    std::vector<std::vector<uint8_t>> choice_;  // [unit][state]
};

// A given choice (an option index per unit) as a result: its bytes (fixed included) and error.
// Refuses a choice of the wrong length or option, by unit name.
PlanResult evaluate_choice(const PlanProblem& problem, const std::vector<size_t>& choice);

struct JumpKneeOptions {
    double rel_jump = 3.0;
    double rel_jump_important = 2.0;
    double iqr_k = 1.5;
    double iqr_k_important = 0.5;
    double important_fraction = 0.10;
    double noise_floor = 1e-6;
    double outlier_min_ratio = 2.0;  // an outlier must also exceed this × the type's median
};

// Options of each unit must be sorted by decreasing bits (highest precision first).
PlanResult plan_jump_knee(const PlanProblem& problem, const JumpKneeOptions& options = {});
// The name tests/analysis/test_plan.cpp knows it by.
inline PlanResult plan_knee(const PlanProblem& problem, const JumpKneeOptions& options = {}) {
    return plan_jump_knee(problem, options);
}

}  // namespace quantlens
