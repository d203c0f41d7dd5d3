// The report's calibration views from real jobs: a `quantlens calibrate` job on llama-8m stores
// a weight histogram per quantizable tensor whose counts, mean and σ agree with the weights read
// straight from the model, and the report data of a sweep job in the same store borrows that
// calibration (newest done calibrate job of the same model hash) and names its job.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "support/cli_run.h"
#include "jobs/store.h"
#include "model/model.h"
#include "report/report_data.h"

namespace fs = std::filesystem;
using namespace quantlens;
using namespace quantlens::cli_testing;

namespace {

const nlohmann::json* entry(const nlohmann::json& cal, const std::string& name) {
    for (const auto& t : cal.at("tensors"))
        if (t.at("name") == name) return &t;
    return nullptr;
}

void expect_rel(double got, double want, const std::string& what) {
    EXPECT_LE(std::fabs(got - want), 1e-6 * std::fabs(want))
        << what << ": " << got << " vs " << want;
}

// The histogram of `name` against the model's own f32 values.
void check_hist(const nlohmann::json& cal, const Model& model, const std::string& name) {
    SCOPED_TRACE(name);
    const nlohmann::json* e = entry(cal, name);
    ASSERT_NE(e, nullptr);
    ASSERT_TRUE(e->contains("weight_hist"));
    const nlohmann::json& h = e->at("weight_hist");
    const TensorInfo* t = model.find(name);
    ASSERT_NE(t, nullptr);
    const std::vector<float> w = model.read_f32(*t);
    ASSERT_EQ(static_cast<int64_t>(w.size()), t->n_elements());

    double s1 = 0, s2 = 0;
    for (float v : w) s1 += v;
    const double mean = s1 / static_cast<double>(w.size());
    for (float v : w) s2 += (v - mean) * (v - mean);
    const double sd = std::sqrt(s2 / static_cast<double>(w.size()));
    int64_t beyond = 0;
    for (float v : w) beyond += std::fabs(v - mean) > 3 * sd;

    const auto counts = h.at("counts").get<std::vector<int64_t>>();
    const auto edges = h.at("edges").get<std::vector<double>>();
    ASSERT_EQ(counts.size(), 64u);
    ASSERT_EQ(edges.size(), 65u);
    int64_t total = 0;
    for (int64_t c : counts) total += c;
    EXPECT_EQ(total, t->n_elements());
    EXPECT_EQ(h.at("n").get<int64_t>(), t->n_elements());
    expect_rel(h.at("mean").get<double>(), mean, "mean");
    expect_rel(h.at("std").get<double>(), sd, "std");
    EXPECT_EQ(edges.front(), *std::min_element(w.begin(), w.end()));
    EXPECT_EQ(edges.back(), *std::max_element(w.begin(), w.end()));
    expect_rel(h.at("frac_beyond_3sigma").get<double>(),
               static_cast<double>(beyond) / static_cast<double>(w.size()), "beyond 3 sigma");
    EXPECT_GT(beyond, 0);  // real weights are heavier-tailed than a Gaussian's 0.27 %
}

}  // namespace

TEST(ReportCalibration, RealCalibrateJobFeedsTheSweepReport) {
    const fs::path dir = fs::path(QL_TEST_TMP) / "cli-report-calibration";
    fs::remove_all(dir);
    fs::create_directories(dir);
    const std::string store_path = (dir / "jobs.sqlite").string();
    const std::string model_dir = shared_path("models/llama-8m");

    auto r = run_quiet("calibrate " + model_dir + " --text " + shared_path("data/calib.txt") +
                       " --ctx 128 --chunks 4 --store " + store_path);
    ASSERT_EQ(r.code, 0) << r.out;
    r = run_quiet("sweep " + model_dir + " --eval " + shared_path("data/eval.txt") +
                  " --tokens 256 --ctx 128 --types Q8_0 --store " + store_path);
    ASSERT_EQ(r.code, 0) << r.out;

    jobs::Store store(store_path);
    jobs::JobFilter cal_filter, sweep_filter;
    cal_filter.kind = jobs::JobKind::calibrate;
    sweep_filter.kind = jobs::JobKind::sweep;
    const auto cals = store.list_jobs(cal_filter), sweeps = store.list_jobs(sweep_filter);
    ASSERT_EQ(cals.size(), 1u);
    ASSERT_EQ(sweeps.size(), 1u);
    ASSERT_EQ(cals[0].state, jobs::JobState::done);
    ASSERT_EQ(cals[0].model_hash, sweeps[0].model_hash);

    // The calibrate job's own artifact: a histogram for every quantizable tensor.
    const std::unique_ptr<Model> model = Model::open(model_dir);
    const nlohmann::json own = report::build_report_data(store, cals[0].id);
    EXPECT_EQ(own["calibration_source"]["job"], cals[0].id);
    EXPECT_EQ(own["calibration_source"]["same_job"], true);
    const nlohmann::json& cal = own["calibration"];
    size_t quantizable = 0, with_hist = 0, with_importance = 0;
    for (const TensorInfo& t : model->tensors()) quantizable += t.quantizable;
    for (const auto& t : cal["tensors"]) {
        with_hist += t.contains("weight_hist");
        with_importance += t.contains("channel_importance");
    }
    EXPECT_EQ(quantizable, 58u);
    EXPECT_EQ(with_hist, quantizable);
    EXPECT_EQ(with_importance, 56u);  // token_embd and output have no calibrated input
    check_hist(cal, *model, "blk.3.ffn_down.weight");
    check_hist(cal, *model, "token_embd.weight");
    EXPECT_EQ((*entry(cal, "blk.3.ffn_down.weight"))["layer"], 3);

    // The sweep job has no calibration of its own: the report borrows the calibrate job's.
    const nlohmann::json doc = report::build_report_data(store, sweeps[0].id);
    ASSERT_TRUE(doc["calibration"].is_object());
    EXPECT_EQ(doc["calibration_source"]["job"], cals[0].id);
    EXPECT_EQ(doc["calibration_source"]["same_job"], false);
    EXPECT_EQ(doc["calibration"], cal);
    check_hist(doc["calibration"], *model, "blk.3.ffn_down.weight");

    // Another model's job (different hash) finds no calibration: as before.
    jobs::NewJob other;
    other.kind = jobs::JobKind::sweep;
    other.model = "other-model";
    other.model_hash = "not-" + sweeps[0].model_hash;
    const int64_t other_id = store.create_job(other);
    const nlohmann::json none = report::build_report_data(store, other_id);
    EXPECT_TRUE(none["calibration"].is_null());
    EXPECT_TRUE(none["calibration_source"].is_null());
}
