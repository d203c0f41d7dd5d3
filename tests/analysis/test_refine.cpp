// plan --refine (analysis/plan/refine.h, analysis/studies/refine.h) and GPTQ-format mixes
// (SweepMeasurer::measure_mix on a GPTQ sweep):
// - on a synthetic problem whose true KLD has a pairwise interaction the knapsack's sum cannot
//   see, the search finds the brute-force optimum within the budget, from the knapsack's
//   choice, and the additive optimum is not it;
// - rounds < 1, a choice over budget, a choice of the wrong length or option are refused by
//   name;
// - on llama-8m, a GPTQ mix of every unit at one format is the sweep's "(all)" item and a mix of
//   one unit is that unit's item; the measured search over a stored GPTQ sweep job keeps its
//   mixes, so a second run measures nothing and chooses the same, never above the budget, and
//   its choice given back to the plan is that plan (a choice over budget refused);
// - a ggml plan with tied units puts every member of a tied option in the mix, and the refined
//   recipe is what the search measured.
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "analysis/plan/gptq_plan.h"
#include "analysis/plan/plan_job.h"
#include "analysis/plan/refine.h"
#include "analysis/studies/refine.h"
#include "analysis/sweep/sweep.h"
#include "core/gptq_format.h"
#include "core/progress.h"
#include "jobs/runner.h"
#include "jobs/store.h"
#include "model/model.h"
#include "support/analysis_options.h"
#include "support/error_of.h"
#include "support/test_data.h"

using namespace quantlens;
using namespace quantlens::test_support;

namespace {

// Six units with three options each (bytes 10, 20, 40; ΔKLD alone d0 × 8, × 3, × 1); units 0
// and 1 are strongly correlated (ρ 0.9), the rest independent: the true KLD of a choice is
// Σ d_u + Σ_{u<v} 2ρ_uv √(d_u d_v).
struct Synthetic {
    PlanProblem problem;
    double rho01 = 0.9;
    double truth(const std::vector<size_t>& x) const {
        double sum = 0;
        for (size_t u = 0; u < x.size(); ++u) sum += problem.units[u].options[x[u]].error;
        const double d0 = problem.units[0].options[x[0]].error,
                     d1 = problem.units[1].options[x[1]].error;
        return sum + 2 * rho01 * std::sqrt(d0 * d1);
    }
    uint64_t bytes(const std::vector<size_t>& x) const {
        uint64_t b = problem.fixed_bytes;
        for (size_t u = 0; u < x.size(); ++u) b += problem.units[u].options[x[u]].bytes;
        return b;
    }
};

Synthetic synthetic() {
    Synthetic s;
    s.problem.fixed_bytes = 100;
    const double d0[6] = {1.0, 1.0, 0.9, 0.8, 0.7, 0.6};
    for (int u = 0; u < 6; ++u)
        s.problem.units.push_back({"u" + std::to_string(u),
                                   {{GgmlType::F32, 40, d0[u] * 1},
                                    {GgmlType::F32, 20, d0[u] * 3},
                                    {GgmlType::F32, 10, d0[u] * 8}}});
    return s;
}

// The best true KLD within the budget, by enumerating every choice.
std::pair<double, std::vector<size_t>> brute_force(const Synthetic& s, uint64_t budget) {
    std::pair<double, std::vector<size_t>> best{1e300, {}};
    std::vector<size_t> x(6, 0);
    for (int code = 0; code < 729; ++code) {
        int c = code;
        for (size_t u = 0; u < 6; ++u, c /= 3) x[u] = static_cast<size_t>(c % 3);
        if (s.bytes(x) <= budget && s.truth(x) < best.first) best = {s.truth(x), x};
    }
    return best;
}

}  // namespace

TEST(Refine, FindsWhatTheSumOfUnitsMisses) {
    const Synthetic s = synthetic();
    const uint64_t budget = 100 + 4 * 20 + 40 + 10;  // room for one unit up per unit down
    const PlanResult plan = KnapsackPlanner(s.problem).solve(budget);
    const auto [best, best_choice] = brute_force(s, budget);
    ASSERT_GT(s.truth(plan.choice), best * 1.05) << "the fixture must fool the sum";

    int64_t measured = 0;
    const MeasureChoices measure = [&](const std::vector<std::vector<size_t>>& xs, const char*) {
        std::vector<double> out;
        for (const auto& x : xs) out.push_back(s.truth(x)), ++measured;
        return out;
    };
    const RefineResult r = refine_choice(s.problem, plan.choice, budget, 5, measure);
    EXPECT_DOUBLE_EQ(r.start_kld, s.truth(plan.choice));
    EXPECT_DOUBLE_EQ(r.kld, s.truth(r.choice));
    EXPECT_LE(s.bytes(r.choice), budget);
    EXPECT_NEAR(r.kld, best, 1e-12);
    EXPECT_EQ(s.truth(r.choice), s.truth(best_choice));  // units 0 and 1 are alike: either
    ASSERT_FALSE(r.steps.empty());
    for (const RefineStep& st : r.steps) {
        EXPECT_LE(st.candidates, 2 * 6);  // one dearer and one cheaper neighbour per unit
        EXPECT_GT(st.moves, 0);
    }
    // Every kept step lowered the measured KLD; the last one is where it ended.
    double last = r.start_kld;
    for (const RefineStep& st : r.steps)
        if (st.accepted) {
            EXPECT_LT(st.measured, last);
            last = st.measured;
        }
    EXPECT_DOUBLE_EQ(last, r.kld);
    EXPECT_LT(measured, 6 * 12 + 20);

    // Already optimal: one round of single moves, nothing to gain, the choice returned.
    const RefineResult again = refine_choice(s.problem, r.choice, budget, 3, measure);
    EXPECT_EQ(again.choice, r.choice);
    EXPECT_TRUE(again.steps.empty() || !again.steps.back().accepted ||
                again.kld < r.kld);  // the linear model may still try and be refused
    EXPECT_LE(again.kld, r.kld);
}

TEST(Refine, RefusesWhatItCannotSearch) {
    const Synthetic s = synthetic();
    const MeasureChoices measure = [&](const std::vector<std::vector<size_t>>& xs, const char*) {
        std::vector<double> out;
        for (const auto& x : xs) out.push_back(s.truth(x));
        return out;
    };
    const std::vector<size_t> mid(6, 1);
    const uint64_t bytes = s.bytes(mid);
    EXPECT_TRUE(contains(error_of([&] { refine_choice(s.problem, mid, bytes, 0, measure); }),
                         "--refine 0"));
    EXPECT_TRUE(contains(error_of([&] { refine_choice(s.problem, mid, bytes - 1, 1, measure); }),
                         "exceed its budget"));
    EXPECT_TRUE(contains(error_of([&] {
                             refine_choice(s.problem, {1, 1, 1}, bytes, 1, measure);
                         }),
                         "3 choices"));
    EXPECT_TRUE(contains(error_of([&] {
                             refine_choice(s.problem, {1, 1, 1, 1, 1, 7}, bytes, 1, measure);
                         }),
                         "unit 'u5' has 3 options"));
}

// ---- on llama-8m ---------------------------------------------------------------------------

namespace {

constexpr double kSamePathRelTol = 1e-9;

SweepOptions gptq_sweep() {
    SweepOptions o = eval_sweep(shared_path("models/llama-8m"), 256, 128, {});
    o.gptq_formats = {*gptq_format_from_name("gptq4g128"), *gptq_format_from_name("gptq3g128a"),
                      *gptq_format_from_name("gptq8pc")};
    return o;
}

}  // namespace

TEST(Refine, AGptqMixIsMeasuredAsTheSweepsOwnItems) {
    Progress::set_enabled(false);
    SweepMeasurer s(gptq_sweep());
    s.prepare();
    const auto all = s.measure("(all)", "gptq4g128");
    const std::string store_dir = scratch_dir("refine-units");
    jobs::Store store(store_dir + "/jobs.sqlite");
    const int64_t id = create_sweep_job(store, gptq_sweep(), "test");
    std::vector<std::pair<std::string, std::string>> every;
    for (const auto& u : store.units(id))
        if (u.name != "(all)") every.push_back({u.name, "gptq4g128"});
    ASSERT_GT(every.size(), 20u);
    const auto mix = s.measure_mix(every);
    for (const char* m : {"kld_mean", "kld_p99", "ppl", "bytes"})
        EXPECT_NEAR(mix.at(m), all.at(m), kSamePathRelTol * std::abs(all.at(m))) << m;
    EXPECT_GT(all.at("kld_mean"), 0.005);

    const std::string unit = every[3].first;
    const auto one = s.measure(unit, "gptq3g128a");
    const auto one_mix = s.measure_mix({{unit, "gptq3g128a"}});
    EXPECT_NEAR(one_mix.at("kld_mean"), one.at("kld_mean"), kSamePathRelTol * one.at("kld_mean"));
    EXPECT_GT(one.at("kld_mean"), 0);
    EXPECT_TRUE(contains(error_of([&] { s.measure_mix({{unit, "Q4_K"}}); }), "not a GPTQ format"));
}

TEST(Refine, TheMeasuredSearchStoresItsMixesAndARePlanMeasuresNothing) {
    Progress::set_enabled(false);
    const std::string dir = scratch_dir("refine-study");
    jobs::Store store(dir + "/jobs.sqlite");
    const int64_t id = run_sweep_job(store, gptq_sweep());
    ASSERT_GT(id, 0);

    GptqPlanRequest req;
    req.job_id = id;
    req.target_like = *gptq_format_from_name("gptq4g128");
    const GptqPlanOutcome plan = plan_gptq_from_job(store, req);
    const PlanSpace& space = plan.space;
    const RefineOutcome first = refine_plan(store, id, space, 1);
    EXPECT_GT(first.measured, 10);
    EXPECT_LE(first.search.kld, first.search.start_kld);
    EXPECT_DOUBLE_EQ(first.result.kld_mean, first.search.kld);
    EXPECT_LE(evaluate_choice(space.problem, first.search.choice).bytes, space.budget);

    // The refined mix measured directly is the result; a second search measures nothing.
    SweepMeasurer s(gptq_sweep());
    s.prepare();
    std::vector<std::pair<std::string, std::string>> mix;
    for (size_t u = 0; u < space.problem.units.size(); ++u)
        mix.push_back(space.parts[u][first.search.choice[u]].at(0));
    EXPECT_NEAR(s.measure_mix(mix).at("kld_mean"), first.result.kld_mean,
                kSamePathRelTol * first.result.kld_mean);
    const RefineOutcome again = refine_plan(store, id, space, 1);
    EXPECT_EQ(again.measured, 0);
    EXPECT_EQ(again.search.choice, first.search.choice);
    PlanSpace broken = space;
    broken.parts.pop_back();
    EXPECT_TRUE(contains(error_of([&] { refine_plan(store, id, broken, 1); }), "option lists"));

    // The refined choice, given back to the plan, is that plan (within the same budget).
    GptqPlanRequest again_req = req;
    again_req.choice = first.search.choice;
    const GptqPlanOutcome refined = plan_gptq_from_job(store, again_req);
    EXPECT_EQ(refined.space.choice, first.search.choice);
    EXPECT_LE(refined.recipe.predicted_size_bytes, space.budget);
    std::vector<size_t> dearest(space.problem.units.size(), 0);  // options sorted by bytes, desc
    again_req.choice = dearest;
    EXPECT_TRUE(
        contains(error_of([&] { plan_gptq_from_job(store, again_req); }), "exceed the budget"));
}

// A ggml plan with tied units (each ffn_down of every layer one unit): a tied option puts all
// its members in the mix; the refined choice given back to the plan writes that recipe.
TEST(Refine, AGgmlPlanWithTiedUnitsIsRefinedAsItsMembers) {
    Progress::set_enabled(false);
    const std::string dir = scratch_dir("refine-ggml");
    jobs::Store store(dir + "/jobs.sqlite");
    SweepOptions o =
        eval_sweep(shared_path("models/llama-8m"), 256, 128, {GgmlType::Q4_K, GgmlType::Q6_K});
    o.ggml_numerics = true;
    const int64_t id = run_sweep_job(store, o);
    ASSERT_GT(id, 0);

    PlanRequest req;
    req.job_id = id;
    req.target_bpw = 5.5;
    req.ties = {"ffn_down"};
    const PlanOutcome plan = plan_from_job(store, req);
    const PlanSpace& space = plan.space;
    size_t tied = 0;
    for (size_t u = 0; u < space.problem.units.size(); ++u)
        if (space.problem.units[u].name == "blk.*.ffn_down.weight") tied = u;
    ASSERT_EQ(space.parts[tied][0].size(), 8u);  // the eight layers' ffn_down
    EXPECT_EQ(space.parts[tied][0][3].first, "blk.3.ffn_down.weight");

    const RefineOutcome r = refine_plan(store, id, space, 1);
    EXPECT_LE(r.search.kld, r.search.start_kld);
    PlanRequest again = req;
    again.choice = r.search.choice;
    const PlanOutcome refined = plan_from_job(store, again);
    EXPECT_LE(refined.recipe.predicted_size_bytes, space.budget);
    for (size_t u = 0; u < space.problem.units.size(); ++u)
        for (const auto& [unit, item] : space.parts[u][r.search.choice[u]])
            EXPECT_EQ(ggml_type_display_name(refined.recipe.tensors.at(unit)), item) << unit;
    SweepMeasurer s(o);
    s.prepare();
    EXPECT_NEAR(s.measure_mix(refined.chosen_items).at("kld_mean"), r.result.kld_mean,
                kSamePathRelTol * r.result.kld_mean);
}

// The sweep job's stored mixes are read back only as written: anything else is refused naming
// the job and the artifact, before any measurement.
TEST(Refine, AStoredMixArtifactNotAsWrittenIsRefusedByName) {
    const std::string dir = scratch_dir("refine-corrupt");
    jobs::Store store(dir + "/jobs.sqlite");
    const int64_t id = create_sweep_job(store, gptq_sweep(), "test");
    const Mix one = {{"blk.0.attn_output.weight", "gptq4g128"}};
    for (const char* bad :
         {"not json", "{\"mixes\": 3}", "{\"mixes\": [{\"n_tokens\": 256}]}",
          "{\"mixes\": [{\"n_tokens\": -1, \"items\": [], \"kld_mean\": 0.1}]}",
          "{\"mixes\": [{\"n_tokens\": 256, \"items\": [[\"a\", \"b\"]], \"kld_mean\": -2}]}"}) {
        store.put_artifact(id, {kInteractionsArtifact, true, bad});
        const std::string e = error_of([&] { MixBook book(store, id); });
        EXPECT_TRUE(contains(e, "job " + std::to_string(id))) << bad << ": " << e;
        EXPECT_TRUE(contains(e, "'interactions' artifact")) << bad << ": " << e;
    }
    // As written: read back, and a mix it does not hold is refused by name.
    store.put_artifact(id, {kInteractionsArtifact, true,
                            "{\"mixes\": [{\"n_tokens\": 256, \"items\": "
                            "[[\"blk.0.attn_output.weight\", \"gptq4g128\"]], \"kld_mean\": "
                            "0.5, \"kld_p99\": null, \"kld_p999\": 2.0}]}"});
    MixBook book(store, id);
    ASSERT_TRUE(book.has(256, one));
    EXPECT_DOUBLE_EQ(book.at(256, one).kld_mean, 0.5);
    EXPECT_TRUE(std::isnan(book.at(256, one).kld_p99));
    EXPECT_DOUBLE_EQ(book.at(256, one).kld_p999, 2.0);
    EXPECT_FALSE(book.has(512, one));
    EXPECT_TRUE(contains(error_of([&] { book.at(512, one); }), "was not measured"));
}
