// The pairwise interaction correction (analysis/plan/interactions.h) and its measuring study
// (analysis/studies/interactions.h):
// - the fit recovers per-class ρ exactly from pairs made by the model, and its cross term is
//   the brute-force sum over every pair;
// - the sampling is deterministic, covers every class with weight, never picks a pair of zero
//   weight, and hits a heavy pair more than once;
// - a class without a measured pair, a pair out of range and 0 pairs are refused by name;
// - on llama-8m (real weights, real tokens): a mix of one unit is that unit's sweep item, a mix
//   of every unit at one type is the "(all)" item, and the study stores its mixes so a second
//   run measures nothing and fits the same;
// - on a real llama-8m measurement (tests/fixtures/sweeps/llama-8m-interactions.json, the
//   Q4_K_M-size plan of bench/RESULTS.md's 2026-12-07 interactions section), the sample is
//   drawn again and fitted to the plan's figures, the fit misses the measured mix by less than
//   2 standard errors but more than the interaction factor does, and ρ is centred on 0.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "analysis/plan/interactions.h"
#include "analysis/plan/plan_job.h"
#include "analysis/studies/interactions.h"
#include "analysis/sweep/sweep.h"
#include "core/error.h"
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

// Units of three layers and two outside them, with unequal ΔKLD (one of them 0).
std::vector<InteractionUnit> synthetic_units() {
    return {{"blk.0.attn_q.weight", 0, 0.004},   {"blk.0.ffn_down.weight", 0, 0.009},
            {"blk.0.ffn_up.weight", 0, 0.0},     {"blk.1.attn_v.weight", 1, 0.002},
            {"blk.1.ffn_down.weight", 1, 0.016}, {"blk.2.ffn_gate.weight", 2, 0.001},
            {"output.weight", -1, 0.025},        {"token_embd.weight", -1, 0.0005}};
}

const std::map<std::string, double> kRho = {
    {"same layer", 0.30}, {"across layers", -0.04}, {"outside layers", 0.12}};

double model_kld(const InteractionUnit& a, const InteractionUnit& b) {
    return a.d + b.d + 2.0 * kRho.at(pair_class(a, b)) * std::sqrt(a.d * b.d);
}

TEST(Interactions, PairClasses) {
    const auto u = synthetic_units();
    EXPECT_EQ(pair_class(u[0], u[1]), "same layer");
    EXPECT_EQ(pair_class(u[0], u[3]), "across layers");
    EXPECT_EQ(pair_class(u[6], u[0]), "outside layers");
    EXPECT_EQ(pair_class(u[6], u[7]), "outside layers");
}

TEST(Interactions, ConstantRhoPerClassIsRecoveredAndTheCrossTermIsTheSumOverEveryPair) {
    const auto units = synthetic_units();
    std::vector<PairResult> pairs;
    for (const PairPick& p : sample_pairs(units, 6))
        pairs.push_back({p, model_kld(units[p.a], units[p.b])});
    const InteractionFit fit = fit_interactions(units, pairs);

    double raw = 0, brute = 0;
    for (size_t i = 0; i < units.size(); ++i) {
        raw += units[i].d;
        for (size_t j = i + 1; j < units.size(); ++j)
            brute += model_kld(units[i], units[j]) - units[i].d - units[j].d;
    }
    EXPECT_DOUBLE_EQ(fit.raw_sum, raw);
    EXPECT_NEAR(fit.cross, brute, 1e-15);
    EXPECT_NEAR(fit.corrected, raw + brute, 1e-15);
    ASSERT_EQ(fit.classes.size(), 3u);
    for (const PairClassFit& c : fit.classes) {
        EXPECT_NEAR(c.rho, kRho.at(c.name), 1e-12) << c.name;
        EXPECT_GE(c.n_measured, 1) << c.name;
        EXPECT_NEAR(c.rho_se, 0.0, 1e-7) << c.name << ": one ρ per class has no spread";
    }
    // blk.0.ffn_up (ΔKLD 0) has no weight: 7 units with weight → 21 pairs: 2 in the same
    // layer (blk.0's, blk.1's), 11 with output or token_embd, the other 8 across layers.
    std::map<std::string, int64_t> n;
    for (const PairClassFit& c : fit.classes) n[c.name] = c.n_pairs;
    EXPECT_EQ(n["same layer"], 2);
    EXPECT_EQ(n["across layers"], 8);
    EXPECT_EQ(n["outside layers"], 11);
}

TEST(Interactions, TheStandardErrorIsTheSpreadOfTheSampledRho) {
    // Four units outside the layers: 6 pairs of one class, three of them measured with
    // ρ = 0.1, −0.1, 0.3 (one hit each).
    const std::vector<InteractionUnit> units = {
        {"a", -1, 0.01}, {"b", -1, 0.01}, {"c", -1, 0.01}, {"d", -1, 0.01}};
    const double w = 2 * 0.01;  // 2√(d_i d_j)
    const std::vector<PairResult> pairs = {
        {{0, 1, 1}, 0.02 + 0.1 * w}, {{0, 2, 1}, 0.02 - 0.1 * w}, {{1, 3, 1}, 0.02 + 0.3 * w}};
    const InteractionFit fit = fit_interactions(units, pairs);
    ASSERT_EQ(fit.classes.size(), 1u);
    const PairClassFit& c = fit.classes[0];
    EXPECT_NEAR(c.rho, 0.1, 1e-12);
    EXPECT_NEAR(c.rho_se, 0.2 / std::sqrt(3.0), 1e-12);  // sd 0.2 over 3 hits
    EXPECT_NEAR(c.weight, 6 * w, 1e-15);
    EXPECT_NEAR(c.cross, 0.1 * 6 * w, 1e-15);
    EXPECT_NEAR(fit.cross_se, c.rho_se * 6 * w, 1e-15);
    EXPECT_NEAR(fit.corrected, 0.04 + 0.1 * 6 * w, 1e-15);
    // One hit: no spread to measure.
    EXPECT_TRUE(std::isnan(fit_interactions(units, {pairs[0]}).cross_se));
}

TEST(Interactions, SamplingIsDeterministicWeightedAndCoversEveryClass) {
    const auto units = synthetic_units();
    const auto a = sample_pairs(units, 10), b = sample_pairs(units, 10);
    ASSERT_EQ(a.size(), b.size());
    std::set<std::pair<size_t, size_t>> seen;
    std::map<std::string, int> hits;
    int total_hits = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        EXPECT_EQ(a[i].a, b[i].a);
        EXPECT_EQ(a[i].b, b[i].b);
        EXPECT_EQ(a[i].hits, b[i].hits);
        EXPECT_LT(a[i].a, a[i].b);
        EXPECT_TRUE(seen.insert({a[i].a, a[i].b}).second) << "a pair picked twice";
        EXPECT_NE(a[i].a, 2u) << "blk.0.ffn_up has ΔKLD 0: no pair of it has weight";
        EXPECT_NE(a[i].b, 2u);
        hits[pair_class(units[a[i].a], units[a[i].b])] += a[i].hits;
        total_hits += a[i].hits;
    }
    EXPECT_EQ(hits.size(), 3u);
    EXPECT_GE(hits["same layer"], 2);  // its share rounds to 1; every class gets 2 if it can
    EXPECT_GE(total_hits, 10);
    // The heaviest pair (output × blk.1.ffn_down, 2√(0.025·0.016) = 0.04) spans more than one
    // of its class's sampling steps (6 steps over 0.137): it is hit twice.
    bool heavy = false;
    for (const PairPick& p : a)
        if (p.a == 4 && p.b == 6) heavy = p.hits == 2;
    EXPECT_TRUE(heavy);
}

TEST(Interactions, RefusesWhatCannotBeFitted) {
    const auto units = synthetic_units();
    EXPECT_TRUE(contains(error_of([&] { sample_pairs(units, 0); }), "at least 1"));
    // Only pairs across layers measured: the "same layer" class cannot be estimated.
    std::vector<PairResult> across;
    for (const PairPick& p : sample_pairs(units, 10))
        if (pair_class(units[p.a], units[p.b]) == "across layers")
            across.push_back({p, model_kld(units[p.a], units[p.b])});
    ASSERT_FALSE(across.empty());
    const std::string e = error_of([&] { fit_interactions(units, across); });
    EXPECT_TRUE(contains(e, "no measured pair in class")) << e;
    EXPECT_TRUE(contains(e, "layer")) << e;
    EXPECT_TRUE(contains(error_of([&] {
                             fit_interactions(units, {{{0, 99, 1}, 0.1}});
                         }),
                         "not a pair of the 8 units"));
    EXPECT_TRUE(contains(error_of([&] {
                             fit_interactions(units, {{{0, 2, 1}, 0.1}});
                         }),
                         "has no weight"));
}

// ---- a real measurement ---------------------------------------------------------------------

// The Q4_K_M-size plan of bench/RESULTS.md's 2026-12-07 section: its 58 units at their chosen
// types, every pair of them measured at those types, and the mix.
TEST(Interactions, OnARealLlama8mPlanThePairFitIsWithinItsErrorButNotTheMix) {
    std::ifstream in(std::string(QL_SOURCE_DIR) +
                     "/tests/fixtures/sweeps/llama-8m-interactions.json");
    ASSERT_TRUE(in.good());
    const nlohmann::json j = nlohmann::json::parse(in);
    std::vector<InteractionUnit> units;
    std::map<std::string, size_t> index;
    for (const auto& u : j.at("units")) {
        index[u.at("name").get<std::string>()] = units.size();
        units.push_back({u.at("name"), u.at("layer"), u.at("d")});
    }
    ASSERT_EQ(units.size(), 58u);
    std::map<std::pair<size_t, size_t>, double> measured;
    for (const auto& p : j.at("pairs")) {
        size_t a = index.at(p.at("a")), b = index.at(p.at("b"));
        measured[{std::min(a, b), std::max(a, b)}] = p.at("kld");
    }
    // The plan's sample, drawn again: every pick was measured by that plan.
    std::vector<PairResult> results;
    for (const PairPick& p : sample_pairs(units, 64)) {
        const auto it = measured.find({p.a, p.b});
        ASSERT_NE(it, measured.end()) << units[p.a].name << " + " << units[p.b].name;
        results.push_back({p, it->second});
    }
    const InteractionFit fit = fit_interactions(units, results);
    EXPECT_NEAR(fit.cross, j.at("plan_cross").get<double>(), 1e-12);
    EXPECT_NEAR(fit.cross_se, j.at("plan_cross_se").get<double>(), 1e-12);

    const double mix = j.at("mix_kld"), factor = j.at("interaction_factor");
    // Non-additivity is +3 % here; the pair fit's error is within 2 standard errors of it but
    // larger than the factor's, which is why the mix is the prediction.
    EXPECT_NEAR(mix / fit.raw_sum, 1.032, 0.001);
    EXPECT_LT(std::abs(fit.raw_sum + fit.cross - mix), 2 * fit.cross_se);
    EXPECT_GT(std::abs(fit.corrected - mix), 5 * std::abs(fit.raw_sum * factor - mix));
    // Pooled over all measured pairs of this mix, ρ is centred on 0 with a spread of ~0.02.
    double sum = 0, sum2 = 0;
    for (const auto& [ab, kld] : measured) {
        const InteractionUnit &a = units[ab.first], &b = units[ab.second];
        const double rho = (kld - a.d - b.d) / (2 * std::sqrt(a.d * b.d));
        sum += rho, sum2 += rho * rho;
    }
    const double n = static_cast<double>(measured.size());
    const double mean = sum / n, sd = std::sqrt(sum2 / n - mean * mean);
    EXPECT_LT(std::abs(mean), 3 * sd / std::sqrt(n));
    EXPECT_GT(sd, 0.01);
    EXPECT_LT(sd, 0.04);
    // Held out (eval.txt): the mix over 51,200 calib tokens is nearer than the factor's figure.
    const double held_out = j.at("verify_eval_kld");
    EXPECT_LT(std::abs(j.at("mix_kld_51200").get<double>() / held_out - 1), 0.09);
    EXPECT_GT(std::abs(fit.raw_sum * factor / held_out - 1), 0.12);
}

// ---- on llama-8m ---------------------------------------------------------------------------

// Relative agreement of two runs of the same computation (the same item code over the same
// tensors; only the order of the overrides differs).
constexpr double kSamePathRelTol = 1e-9;

SweepOptions small_sweep() {
    SweepOptions o =
        eval_sweep(shared_path("models/llama-8m"), 256, 128, {GgmlType::Q4_K, GgmlType::Q6_K});
    o.ggml_numerics = true;
    return o;
}

TEST(Interactions, AMixIsMeasuredAsTheSweepsOwnItems) {
    Progress::set_enabled(false);
    SweepMeasurer s(small_sweep());
    s.prepare();
    const auto all = s.measure("(all)", "Q4_K");
    std::vector<std::pair<std::string, std::string>> every;
    for (const auto& u : build_sweep_units(*Model::open(small_sweep().model), "tensor"))
        every.push_back({u.name, "Q4_K"});
    const auto mix = s.measure_mix(every);
    for (const char* m : {"kld_mean", "kld_p99", "ppl", "top1_agree", "bytes"})
        EXPECT_NEAR(mix.at(m), all.at(m), kSamePathRelTol * std::abs(all.at(m))) << m;
    EXPECT_GT(all.at("kld_mean"), 0.005);

    const auto one = s.measure("blk.3.ffn_down.weight", "Q6_K");
    const auto one_mix = s.measure_mix({{"blk.3.ffn_down.weight", "Q6_K"}});
    EXPECT_NEAR(one_mix.at("kld_mean"), one.at("kld_mean"), kSamePathRelTol * one.at("kld_mean"));
    EXPECT_GT(one.at("kld_mean"), 0);

    // Two units at different types: not the sum of their items (that is the point), but both
    // count in the bytes.
    const auto a = s.measure("blk.1.attn_v.weight", "Q4_K");
    const auto pair = s.measure_mix({{"blk.1.attn_v.weight", "Q4_K"}, {"output.weight", "Q6_K"}});
    const auto b = s.measure("output.weight", "Q6_K");
    EXPECT_DOUBLE_EQ(pair.at("bytes"), a.at("bytes") + b.at("bytes"));

    EXPECT_TRUE(contains(error_of([&] { s.measure_mix({{"(all)", "Q4_K"}}); }), "no unit '(all)'"));
    EXPECT_TRUE(contains(error_of([&] {
                             s.measure_mix({{"output.weight", "Q4_K"}, {"output.weight", "Q6_K"}});
                         }),
                         "listed twice"));
    EXPECT_TRUE(contains(error_of([&] {
                             s.measure_mix({{"output.weight", "Q4_K+gptq"}});
                         }),
                         "no --rounding-choice"));
    EXPECT_TRUE(contains(error_of([&] {
                             s.measure_mix({{"output.weight", "Q9_X"}});
                         }),
                         "not a type"));
    EXPECT_TRUE(contains(error_of([&] { s.measure_mix({}); }), "no units"));
}

TEST(Interactions, TheStudyStoresItsMixesAndARePlanMeasuresNothing) {
    Progress::set_enabled(false);
    const std::string dir = scratch_dir("interactions-study");
    jobs::Store store(dir + "/jobs.sqlite");
    const int64_t id = run_sweep_job(store, small_sweep());
    ASSERT_GT(id, 0);

    PlanRequest req;
    req.job_id = id;
    req.target_bpw = 5.5;  // between Q4_K and Q6_K: a real mix
    PlanOutcome plan = plan_from_job(store, req);
    std::set<std::string> types;
    for (const auto& [unit, item] : plan.chosen_items) types.insert(item);
    ASSERT_EQ(types.size(), 2u) << "the plan should mix Q4_K and Q6_K";

    const InteractionStudy first = study_interactions(store, id, plan.chosen_items, 6);
    EXPECT_EQ(first.measured, static_cast<int64_t>(first.pairs.size()) + 1);  // + the mix
    EXPECT_EQ(first.reused, 0);
    EXPECT_GT(first.mix_kld, 0);
    ASSERT_TRUE(store.get_artifact(id, kInteractionsArtifact).has_value());

    const InteractionStudy again = study_interactions(store, id, plan.chosen_items, 6);
    EXPECT_EQ(again.measured, 0);
    EXPECT_EQ(again.reused, first.measured);
    EXPECT_DOUBLE_EQ(again.fit.corrected, first.fit.corrected);
    EXPECT_DOUBLE_EQ(again.mix_kld, first.mix_kld);

    // The mix over more tokens of the sweep's text: one more measurement, the pairs reused.
    const InteractionStudy longer = study_interactions(store, id, plan.chosen_items, 6, 512);
    EXPECT_EQ(longer.measured, 1);
    EXPECT_EQ(longer.mix_tokens, 512);
    EXPECT_DOUBLE_EQ(longer.mix_kld, first.mix_kld);
    EXPECT_DOUBLE_EQ(longer.fit.corrected, first.fit.corrected);
    EXPECT_NE(longer.predicted_kld, first.mix_kld);
    SweepOptions o512 = small_sweep();
    o512.n_tokens = 512;
    SweepMeasurer s512(o512);
    s512.prepare();
    EXPECT_NEAR(s512.measure_mix(plan.chosen_items).at("kld_mean"), longer.predicted_kld,
                kSamePathRelTol * longer.predicted_kld);
    EXPECT_EQ(study_interactions(store, id, plan.chosen_items, 6, 512).measured, 0);

    // A stored pair is what measure_mix gives for it.
    SweepMeasurer s(small_sweep());
    s.prepare();
    const PairResult& p = first.pairs.front();
    const auto direct = s.measure_mix({plan.chosen_items[p.pick.a], plan.chosen_items[p.pick.b]});
    EXPECT_NEAR(direct.at("kld_mean"), p.kld, kSamePathRelTol * p.kld);

    // The recipe takes the measured mix, which is what verify measures on the sweep's tokens;
    // another choice's fit and a mix that is not a number are refused.
    const double factor = plan.factor_predicted_kld;
    EXPECT_EQ(first.mix_tokens, 256);
    EXPECT_DOUBLE_EQ(first.predicted_kld, first.mix_kld);  // the mix on the sweep's tokens
    const MeasuredMix mix{first.mix_tokens, first.predicted_kld, first.predicted_kld_p99,
                          first.predicted_kld_p999, first.mix_kld};
    apply_interaction_fit(plan, first.fit, mix);
    EXPECT_DOUBLE_EQ(plan.recipe.predicted_kld, first.mix_kld);
    EXPECT_DOUBLE_EQ(plan.recipe.predicted_kld_p99, first.predicted_kld_p99);
    EXPECT_DOUBLE_EQ(plan.factor_predicted_kld, factor);
    std::vector<std::pair<std::string, std::string>> recipe_items;
    for (const auto& [unit, item] : plan.chosen_items) recipe_items.push_back({unit, item});
    EXPECT_NEAR(s.measure_mix(recipe_items).at("kld_mean"), first.mix_kld,
                kSamePathRelTol * first.mix_kld);
    MeasuredMix nan_mix = mix;
    nan_mix.kld_mean = std::nan("");
    EXPECT_TRUE(contains(error_of([&] { apply_interaction_fit(plan, first.fit, nan_mix); }),
                         "not a positive number"));
    InteractionFit other = first.fit;
    other.raw_sum *= 1.5;
    EXPECT_TRUE(contains(error_of([&] { apply_interaction_fit(plan, other, mix); }),
                         "not this plan's choice"));

    // A corrupt or hand-edited artifact is refused naming the job and the artifact.
    for (const char* data :
         {"{\"mixes\": [{\"n_tokens\": 256}]", "{\"mixes\": 3}",
          "{\"mixes\": [{\"n_tokens\": 0, \"items\": [], \"kld_mean\": 0.1}]}"}) {
        store.put_artifact(id, {kInteractionsArtifact, true, data});
        const std::string c =
            error_of([&] { study_interactions(store, id, plan.chosen_items, 6); });
        EXPECT_TRUE(contains(c, "job " + std::to_string(id))) << c;
        EXPECT_TRUE(contains(c, "'interactions' artifact")) << c;
    }

    // A chosen item the sweep did not measure is refused by name.
    auto bad = plan.chosen_items;
    bad.front().second = "Q8_0";
    const std::string e = error_of([&] { study_interactions(store, id, bad, 6); });
    EXPECT_TRUE(contains(e, bad.front().first)) << e;
    EXPECT_TRUE(contains(e, "kld_mean")) << e;
}

}  // namespace
