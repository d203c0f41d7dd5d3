#include <gtest/gtest.h>

#include <random>

#include "analysis/plan/plan.h"
#include "core/error.h"

using namespace quantlens;

namespace {

PlanProblem random_problem(std::mt19937& rng, size_t n_units, size_t n_opts) {
    PlanProblem p;
    p.fixed_bytes = 1000;
    std::uniform_int_distribution<int> size(1, 40);
    std::uniform_real_distribution<double> err(0.0, 1.0);
    for (size_t u = 0; u < n_units; ++u) {
        PlanUnit unit{"t" + std::to_string(u), {}};
        for (size_t o = 0; o < n_opts; ++o)
            unit.options.push_back(
                {GgmlType::Q4_K, static_cast<uint64_t>(size(rng)) * 256, err(rng)});
        p.units.push_back(unit);
    }
    return p;
}

// Exhaustive reference twin of the DP.
double brute_force(const PlanProblem& p, uint64_t budget) {
    double best = 1e300;
    std::vector<size_t> idx(p.units.size(), 0);
    for (;;) {
        uint64_t bytes = p.fixed_bytes;
        double e = 0;
        for (size_t i = 0; i < idx.size(); ++i) {
            bytes += p.units[i].options[idx[i]].bytes;
            e += p.units[i].options[idx[i]].error;
        }
        if (bytes <= budget) best = std::min(best, e);
        size_t i = 0;
        while (i < idx.size() && ++idx[i] == p.units[i].options.size()) idx[i++] = 0;
        if (i == idx.size()) break;
    }
    return best;
}

}  // namespace

TEST(Knapsack, MatchesBruteForceOnRandomProblems) {
    std::mt19937 rng(7);
    for (int trial = 0; trial < 30; ++trial) {
        PlanProblem p = random_problem(rng, 5, 4);
        KnapsackPlanner planner(p);
        for (uint64_t budget = planner.min_bytes(); budget <= planner.max_bytes(); budget += 777) {
            PlanResult r = planner.solve(budget);
            EXPECT_LE(r.bytes, budget);
            EXPECT_NEAR(r.error, brute_force(p, budget), 1e-12) << "trial " << trial;
        }
    }
}

TEST(Knapsack, CoarseGrainStaysFeasible) {
    std::mt19937 rng(11);
    PlanProblem p = random_problem(rng, 6, 3);
    KnapsackPlanner coarse(p, 16);  // forces rounding sizes up to a coarse grain
    KnapsackPlanner exact(p);
    EXPECT_GT(coarse.solve(coarse.max_bytes()).grain_bytes, 256u);
    for (uint64_t budget = exact.min_bytes(); budget <= exact.max_bytes(); budget += 501) {
        PlanResult r = coarse.solve(budget);
        EXPECT_LE(r.bytes, budget);
        EXPECT_GE(r.error, exact.solve(budget).error - 1e-12);
    }
}

TEST(Knapsack, FrontierIsMonotone) {
    std::mt19937 rng(3);
    KnapsackPlanner planner(random_problem(rng, 12, 5));
    auto f = planner.frontier(50);
    ASSERT_GE(f.size(), 2u);
    EXPECT_LE(f.size(), 51u);
    for (size_t i = 1; i < f.size(); ++i) {
        EXPECT_GT(f[i].bytes, f[i - 1].bytes);
        EXPECT_LT(f[i].error, f[i - 1].error);
    }
}

TEST(Knapsack, BudgetBelowMinimumIsAClearError) {
    std::mt19937 rng(5);
    KnapsackPlanner planner(random_problem(rng, 3, 3));
    try {
        planner.solve(planner.min_bytes() - 1);
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("below the smallest possible size"),
                  std::string::npos);
    }
}

TEST(Knee, StopsBeforeDisproportionateJump) {
    PlanProblem p;
    // Errors by decreasing bits: smooth growth then a 10x jump at the 4th type.
    for (int u = 0; u < 10; ++u) {
        PlanUnit unit{"t" + std::to_string(u), {}};
        const double e[] = {0.001, 0.002, 0.004, 0.04};
        const uint64_t b[] = {800, 600, 500, 300};
        for (int k = 0; k < 4; ++k)
            unit.options.push_back({GgmlType::Q8_0, b[k], e[k] * (1 + u * 0.01)});
        p.units.push_back(unit);
    }
    PlanResult r = plan_knee(p);
    for (size_t c : r.choice) EXPECT_EQ(c, 2u);
}
