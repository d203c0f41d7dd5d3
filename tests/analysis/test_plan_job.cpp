// plan_from_job on a sweep of llama-8m's real tensor list (tests/report/fake_sweep.h: values
// follow a smooth law, they are not measurements): the GGUF header estimate equals the header
// quantize writes and the predicted size is the written file's, the interaction factor is the
// median ratio of the "(all)" items to the per-tensor sums, and pins hold under any budget.
// On a real sweep (tests/fixtures/sweeps/llama-8m-tails.json), --objective p99 chooses another
// recipe than the mean, and every prediction (mean, p99, p99.9) is its sum × its own factor.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "analysis/plan/plan_job.h"
#include "analysis/sweep/sweep.h"
#include "analysis/write/presets.h"
#include "analysis/write/quantize.h"
#include "core/error.h"
#include "formats/gguf.h"
#include "jobs/store.h"
#include "model/model.h"
#include "report/fake_sweep.h"  // tests/report: a sweep of llama-8m's real tensor list
#include "support/test_data.h"

namespace fs = std::filesystem;
using namespace quantlens;
using namespace quantlens::test_support;

namespace {

std::string llama8m() {
    return shared_dir() + "/models/llama-8m";
}

TEST(PlanJob, HeaderEstimateEqualsTheHeaderQuantizeWrites) {
    const std::string dir = fresh_dir("planjob");
    auto model = Model::open(llama8m());
    QuantizeOptions o;
    o.output_path = dir + "/q8.gguf";
    o.progress = false;
    quantize_model(*model, preset_recipe("Q8_0", *model, false), o);
    const GgufFile written = GgufFile::open(o.output_path);
    EXPECT_EQ(gguf_header_bytes(*model), written.data_offset());
}

struct FakeJob {
    std::string dir;
    std::unique_ptr<jobs::Store> store;
    int64_t job = 0;

    // A plan of this job to BPW bits per weight, the other settings at their defaults.
    PlanRequest request(double bpw) const {
        PlanRequest r;
        r.job_id = job;
        r.target_bpw = bpw;
        return r;
    }
};

FakeJob fake_job() {
    FakeJob f;
    f.dir = fresh_dir("planjob");
    f.store = std::make_unique<jobs::Store>(f.dir + "/jobs.sqlite");
    f.job = fill_fake_sweep(*f.store, llama8m(), false).job;
    f.store->put_artifact(f.job,
                          {"model_info", true, model_info_json(*Model::open(llama8m())).dump()});
    return f;
}

// Σ per-tensor kld_mean of job at `type`, as the plan sums them.
double per_tensor_sum(jobs::Store& store, int64_t job, const std::string& type) {
    double sum = 0;
    for (const auto& m : store.measurements(job, type, "kld_mean"))
        if (m.unit != "(all)") sum += std::max(0.0, m.value);
    return sum;
}

double kld_of(jobs::Store& store, int64_t job, const std::string& unit, const std::string& type) {
    for (const auto& m : store.measurements(job, type, "kld_mean"))
        if (m.unit == unit) return m.value;
    throw Error("no kld_mean for " + unit + " at " + type);
}

TEST(PlanJob, InteractionFactorIsTheMedianRatioOfAllItems) {
    auto f = fake_job();
    f.store->add_units(f.job, {{"(all)", -1, "all", 0, "{}"}});
    f.store->add_work_items(f.job, {{"(all)", "Q2_K"}, {"(all)", "Q4_K"}, {"(all)", "Q6_K"}});
    const double ratios[] = {1.2, 3.0, 1.5};  // median 1.5
    const char* types[] = {"Q2_K", "Q4_K", "Q6_K"};
    for (int i = 0; i < 3; ++i)
        f.store->record_item(f.job, "(all)", types[i],
                             {{"kld_mean", ratios[i] * per_tensor_sum(*f.store, f.job, types[i])}});
    PlanRequest req = f.request(5.0);
    const PlanOutcome out = plan_from_job(*f.store, req);
    EXPECT_NEAR(out.interaction_factor, 1.5, 1e-9);
    double raw = 0;
    for (const auto& [unit, type] : out.choices) raw += kld_of(*f.store, f.job, unit, type);
    EXPECT_NEAR(out.recipe.predicted_kld, raw * 1.5, 1e-9 * raw);
}

TEST(PlanJob, PredictedSizeIsTheWrittenFileSize) {
    auto f = fake_job();
    for (const double bpw : {3.5, 5.0}) {
        PlanRequest req = f.request(bpw);
        const PlanOutcome out = plan_from_job(*f.store, req);
        auto model = Model::open(llama8m());
        QuantizeOptions o;
        o.output_path = f.dir + "/plan.gguf";
        o.force = true;
        o.progress = false;
        o.allow_other_model = true;  // the fake sweep's model hash is not llama-8m's
        const QuantizeResult q = quantize_model(*model, out.recipe, o);
        EXPECT_EQ(out.recipe.predicted_size_bytes, fs::file_size(o.output_path)) << bpw << " bpw";
        EXPECT_EQ(q.file_bytes, fs::file_size(o.output_path));
    }
}

TEST(PlanJob, WithoutAllItemsTheFactorIsOne) {
    auto f = fake_job();
    PlanRequest req = f.request(5.0);
    EXPECT_EQ(plan_from_job(*f.store, req).interaction_factor, 1.0);
}

TEST(PlanJob, PinsHoldUnderATightAndALooseBudget) {
    auto f = fake_job();
    for (const double bpw : {3.0, 8.0}) {
        PlanRequest req = f.request(bpw);
        req.pins = {{"^blk\\.0\\.attn_v\\.weight$", GgmlType::Q8_0}, {"ffn_down", GgmlType::Q3_K}};
        const PlanOutcome out = plan_from_job(*f.store, req);
        int n_down = 0;
        for (const auto& [unit, type] : out.choices) {
            if (unit == "blk.0.attn_v.weight") {
                EXPECT_EQ(type, "Q8_0") << "at " << bpw << " bpw";
            }
            if (unit.find("ffn_down") != std::string::npos) {
                EXPECT_EQ(type, "Q3_K") << unit << " at " << bpw << " bpw";
                ++n_down;
            }
        }
        EXPECT_GT(n_down, 0);
        EXPECT_EQ(out.recipe.tensors.at("blk.0.attn_v.weight"), GgmlType::Q8_0);
    }
}

// plan_from_job with one pin must fail with a message containing `expected`.
void expect_pin_refused(const std::string& pattern, GgmlType type, const std::string& expected) {
    auto f = fake_job();
    PlanRequest req = f.request(5.0);
    req.pins = {{pattern, type}};
    try {
        plan_from_job(*f.store, req);
        FAIL() << "expected an Error for pin " << pattern;
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    }
}

TEST(PlanJob, APinThatMatchesNothingIsRefusedByName) {
    expect_pin_refused("^no_such_tensor$", GgmlType::Q8_0, "no_such_tensor");
}

TEST(PlanJob, APinToAnUnmeasuredTypeIsRefusedByName) {
    expect_pin_refused("attn_q", GgmlType::IQ2_XXS, "did not measure");
}

// A real sweep of llama-8m (tests/fixtures/sweeps/llama-8m-tails.json: 5 K-quant types × 58
// tensors + "(all)", 4,096 tokens of calib.txt, llama.cpp's imatrix, --ggml-numerics) loaded
// into a fresh store.
FakeJob real_sweep_job() {
    FakeJob f;
    f.dir = fresh_dir("planjob-real");
    f.store = std::make_unique<jobs::Store>(f.dir + "/jobs.sqlite");
    std::ifstream in(std::string(QL_SOURCE_DIR) + "/tests/fixtures/sweeps/llama-8m-tails.json");
    const nlohmann::json fx = nlohmann::json::parse(in);
    jobs::NewJob nj;
    nj.kind = jobs::JobKind::sweep;
    nj.model = llama8m();
    nj.params = nlohmann::json{{"granularity", "tensor"}, {"model", llama8m()}}.dump();
    f.job = f.store->create_job(nj);
    f.store->start(f.job);
    std::vector<jobs::Unit> units;
    for (const auto& u : fx.at("units"))
        units.push_back({u.at("name"), u.at("layer"), u.at("role"), u.at("n_params"), "{}"});
    f.store->add_units(f.job, units);
    std::vector<jobs::WorkItem> items;
    for (const auto& [unit, types] : fx.at("measurements").items())
        for (const auto& [type, metrics] : types.items()) items.push_back({unit, type});
    f.store->add_work_items(f.job, items);
    for (const auto& [unit, types] : fx.at("measurements").items())
        for (const auto& [type, metrics] : types.items()) {
            jobs::Metrics m;
            for (const auto& [k, v] : metrics.items()) m[k] = v.get<double>();
            f.store->record_item(f.job, unit, type, m);
        }
    f.store->finish(f.job);
    f.store->put_artifact(f.job,
                          {"model_info", true, model_info_json(*Model::open(llama8m())).dump()});
    return f;
}

// Σ of `metric` over a plan's choice, as measured per tensor.
double choice_sum(jobs::Store& store, int64_t job, const PlanOutcome& out, const char* metric) {
    double sum = 0;
    for (const auto& [unit, type] : out.choices)
        for (const auto& m : store.measurements(job, type, metric))
            if (m.unit == unit) sum += std::max(0.0, m.value);
    return sum;
}

TEST(PlanJob, TheP99ObjectiveChoosesAnotherRecipeOnARealSweep) {
    auto f = real_sweep_job();
    PlanRequest mean_req;
    mean_req.job_id = f.job;
    mean_req.target_bytes = 5373408;  // llama.cpp's Q4_K_M file of llama-8m
    PlanRequest p99_req = mean_req;
    p99_req.objective = "p99";
    const PlanOutcome by_mean = plan_from_job(*f.store, mean_req);
    const PlanOutcome by_p99 = plan_from_job(*f.store, p99_req);
    EXPECT_NE(by_mean.choices, by_p99.choices);
    EXPECT_LE(by_p99.recipe.predicted_size_bytes, 5373408u);
    // Each is the optimum of its own objective under the same budget.
    EXPECT_LT(choice_sum(*f.store, f.job, by_p99, "kld_p99"),
              choice_sum(*f.store, f.job, by_mean, "kld_p99"));
    EXPECT_LT(choice_sum(*f.store, f.job, by_mean, "kld_mean"),
              choice_sum(*f.store, f.job, by_p99, "kld_mean"));
    // Every prediction is made whichever objective chose: tails × their own factors.
    for (const PlanOutcome* out : {&by_mean, &by_p99}) {
        EXPECT_NEAR(out->recipe.predicted_kld_p99,
                    choice_sum(*f.store, f.job, *out, "kld_p99") * out->interaction_factor_p99,
                    1e-12);
        EXPECT_NEAR(out->recipe.predicted_kld_p999,
                    choice_sum(*f.store, f.job, *out, "kld_p999") * out->interaction_factor_p999,
                    1e-12);
        EXPECT_NEAR(out->recipe.predicted_kld,
                    choice_sum(*f.store, f.job, *out, "kld_mean") * out->interaction_factor, 1e-12);
    }
    EXPECT_EQ(by_p99.recipe.objective, "p99");
    EXPECT_NEAR(by_p99.raw_error, choice_sum(*f.store, f.job, by_p99, "kld_p99"), 1e-12);
    // The tails' factors are fitted on the uniform items' tails, not copied from the mean's.
    EXPECT_NE(by_mean.interaction_factor_p99, by_mean.interaction_factor);
    EXPECT_GT(by_mean.interaction_factor_p99, 0.0);
}

TEST(PlanJob, TheP99ObjectiveNeedsMeasuredTails) {
    auto f = fake_job();  // the fake sweep records no kld_p99
    PlanRequest req = f.request(5.0);
    req.objective = "p99";
    try {
        plan_from_job(*f.store, req);
        FAIL() << "planned on tails that were never measured";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("recorded no 'kld_p99'"), std::string::npos)
            << e.what();
    }
    req.objective = "mean";
    req.metric = "proxy";
    EXPECT_NO_THROW(plan_from_job(*f.store, req));
    req.objective = "p99";
    try {
        plan_from_job(*f.store, req);
        FAIL() << "--objective p99 with --metric proxy";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("needs --metric kld"), std::string::npos) << e.what();
    }
}

}  // namespace
