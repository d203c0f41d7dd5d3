// sweep --experts, plan --tie and the rare-expert imatrix fallback on the tiny Qwen3-MoE
// fixture (tests/fixtures/qwen3moe: 3 layers of 8 experts, top-2, trained so routing is
// skewed; expert 0 of layer 0 takes no token of eval.txt in transformers' reference).
// What is checked against something other than the code under test:
//  - one expert's slices quantized alone hold exactly its share of the stacked tensors'
//    quantization error and bytes (rows quantize independently), so the per-expert sums
//    equal the stacked tensors' own items;
//  - an expert no token is routed to changes nothing (ΔKLD exactly 0), every routed one does;
//  - routing shares sum to 1 per layer and the counts to tokens × top-k, and agree with the
//    engine's Routing hook on the same chunks;
//  - plan never chooses an expert unit, and --tie gives every tied role one type.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "analysis/measure/chunks.h"
#include "analysis/plan/plan_job.h"
#include "analysis/sweep/expert_units.h"
#include "analysis/sweep/sweep.h"
#include "core/error.h"
#include "engine/engine.h"
#include "engine/tokenizer.h"
#include "formats/imatrix.h"
#include "jobs/runner.h"
#include "jobs/store.h"
#include "model/imatrix_coverage.h"
#include "model/model.h"
#include "support/analysis_options.h"
#include "support/family_reference.h"
#include "support/test_data.h"

namespace quantlens {
namespace {

using test_support::fixture_dir;
using test_support::fresh_dir;
using test_support::shared_path;

constexpr int64_t kCtx = 64, kTokens = 128;  // two chunks: fast, and enough routed tokens

SweepOptions expert_options() {
    SweepOptions o = test_support::eval_sweep(fixture_dir("qwen3moe"), kTokens, kCtx,
                                              {GgmlType::Q8_0, GgmlType::Q4_0});
    o.experts = true;
    return o;
}

struct SweptJob {
    std::unique_ptr<jobs::Store> store;
    int64_t id = 0;
    // unit → type → metric
    std::map<std::string, std::map<std::string, std::map<std::string, double>>> m;
};

// One sweep shared by the tests below (it takes about a second).
SweptJob& swept() {
    static SweptJob job = [] {
        SweptJob j;
        j.store = std::make_unique<jobs::Store>(fresh_dir("sweep-experts") + "/jobs.sqlite");
        j.id = create_sweep_job(*j.store, expert_options(), "test");
        j.store->start(j.id);
        EXPECT_EQ(jobs::run_job(*j.store, j.id, [&] { return run_sweep(*j.store, j.id); }),
                  jobs::JobState::done);
        for (const auto& x : j.store->measurements(j.id)) j.m[x.unit][x.type][x.metric] = x.value;
        return j;
    }();
    return job;
}

TEST(SweepExperts, OneRowPerLayerAndExpertWithRoutingShares) {
    SweptJob& j = swept();
    int expert_units = 0;
    for (const auto& u : j.store->units(j.id)) {
        if (u.role != kExpertRole) continue;
        ++expert_units;
        const auto ex = parse_expert_unit(u.name);
        ASSERT_TRUE(ex) << u.name;
        EXPECT_EQ(u.layer, ex->first);
        EXPECT_EQ(nlohmann::json::parse(u.extra)["expert"], ex->second);
        for (const char* type : {"Q8_0", "Q4_0"})
            for (const char* metric : {"kld_mean", "route_share", "route_tokens", "w_rmse"})
                EXPECT_TRUE(j.m[u.name][type].count(metric)) << u.name << " " << metric;
    }
    EXPECT_EQ(expert_units, 3 * 8);

    const auto art = j.store->get_artifact(j.id, "routing");
    ASSERT_TRUE(art.has_value());
    const auto routing = nlohmann::json::parse(art->data);
    EXPECT_EQ(routing["top_k"], 2);
    for (int l = 0; l < 3; ++l) {
        double share = 0, tokens = 0;
        for (int e = 0; e < 8; ++e) {
            const auto& row = j.m[fmt::format("blk.{}.expert.{}", l, e)]["Q4_0"];
            share += row.at("route_share");
            tokens += row.at("route_tokens");
            EXPECT_EQ(row.at("route_tokens"), routing["counts"][l][e].get<double>());
        }
        EXPECT_NEAR(share, 1.0, 1e-12) << l;
        EXPECT_EQ(tokens, 2.0 * kTokens) << l;
        EXPECT_EQ(routing["tokens"][l], kTokens);
    }
}

// The routing counts are the engine's own choices on the sweep's chunks.
TEST(SweepExperts, RoutingCountsAreTheEnginesChoices) {
    SweptJob& j = swept();
    const auto model = Model::open(fixture_dir("qwen3moe"));
    Engine engine(*model, EngineOptions{.f16_weights = true});
    const Tokenizer tok = Tokenizer::load(*model);
    const EvalChunks chunks =
        load_eval_chunks(tok, shared_path("data/eval.txt"), kCtx, kTokens / kCtx);
    std::vector<std::vector<int64_t>> counts(3, std::vector<int64_t>(8, 0));
    engine.set_hook([&](const HookEvent& e) {
        if (e.kind == HookEvent::Kind::Routing)
            for (int64_t i = 0; i < e.rows * e.cols; ++i)
                ++counts[e.layer][static_cast<int>(e.data[i])];
    });
    engine.forward(chunks.tokens, chunks.n_chunks, chunks.n_ctx, chunks.n_ctx - 1);
    for (int l = 0; l < 3; ++l)
        for (int e = 0; e < 8; ++e)
            EXPECT_EQ(j.m[fmt::format("blk.{}.expert.{}", l, e)]["Q4_0"]["route_tokens"],
                      static_cast<double>(counts[l][e]))
                << l << " " << e;
}

TEST(SweepExperts, UnroutedExpertsChangeNothingRoutedOnesDo) {
    SweptJob& j = swept();
    int unrouted = 0, routed = 0;
    for (int l = 0; l < 3; ++l)
        for (int e = 0; e < 8; ++e) {
            const auto& row = j.m[fmt::format("blk.{}.expert.{}", l, e)]["Q4_0"];
            EXPECT_GT(row.at("w_rmse"), 0.0);  // its weights did change
            if (row.at("route_tokens") == 0) {
                ++unrouted;
                EXPECT_EQ(row.at("kld_mean"), 0.0) << l << " " << e;
            } else {
                ++routed;
                EXPECT_GT(row.at("kld_mean"), 0.0) << l << " " << e;
            }
        }
    EXPECT_GT(routed, 0);
    std::printf("qwen3moe --experts: %d routed, %d unrouted (layer, expert) on %lld tokens\n",
                routed, unrouted, static_cast<long long>(kTokens));
}

// Rows quantize independently, so the experts' slices add up to the stacked tensors.
TEST(SweepExperts, ExpertSlicesAddUpToTheStackedTensors) {
    SweptJob& j = swept();
    for (int l = 0; l < 3; ++l)
        for (const char* type : {"Q8_0", "Q4_0"}) {
            double sse_experts = 0, bytes_experts = 0, sse_tensors = 0, bytes_tensors = 0;
            for (int e = 0; e < 8; ++e) {
                const auto& row = j.m[fmt::format("blk.{}.expert.{}", l, e)][type];
                const double n = 3.0 * 64 * 64;  // gate, up, down slices of 64 × 64
                sse_experts += row.at("w_rmse") * row.at("w_rmse") * n;
                bytes_experts += row.at("bytes");
            }
            for (const char* role : {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"}) {
                const auto& row = j.m[fmt::format("blk.{}.{}.weight", l, role)][type];
                const double n = 8.0 * 64 * 64;
                sse_tensors += row.at("w_rmse") * row.at("w_rmse") * n;
                bytes_tensors += row.at("bytes");
            }
            EXPECT_NEAR(sse_experts, sse_tensors, 1e-9 * sse_tensors) << l << " " << type;
            EXPECT_EQ(bytes_experts, bytes_tensors) << l << " " << type;
        }
}

TEST(SweepExperts, SummaryListsExpertsApartFromTheUnits) {
    const std::string s = sweep_summary(*swept().store, swept().id);
    EXPECT_NE(s.find("experts at Q4_0"), std::string::npos) << s;
    EXPECT_NE(s.find("Spearman(routing share, ΔKLD) over 24 experts"), std::string::npos) << s;
}

TEST(SweepExperts, SampleIsFixedAndDistinct) {
    const auto model = Model::open(fixture_dir("qwen3moe"));
    const auto a = build_expert_units(*model, 3), b = build_expert_units(*model, 3);
    ASSERT_EQ(a.size(), 9u);
    std::map<int, std::set<std::string>> per_layer;
    for (size_t i = 0; i < a.size(); ++i) {
        EXPECT_EQ(a[i].name, b[i].name);
        per_layer[a[i].layer].insert(a[i].name);
        EXPECT_EQ(a[i].tensors.size(), 3u);
        EXPECT_EQ(a[i].n_params, 3 * 64 * 64);
    }
    for (const auto& [layer, names] : per_layer) EXPECT_EQ(names.size(), 3u) << layer;
    EXPECT_EQ(build_expert_units(*model, 0).size(), 24u);
    EXPECT_EQ(build_expert_units(*model, 100).size(), 24u);
}

TEST(SweepExperts, RefusalsNameTheOption) {
    jobs::Store store(fresh_dir("sweep-experts-bad") + "/jobs.sqlite");
    SweepOptions dense = expert_options();
    dense.model = shared_path("models/llama-8m");
    try {
        create_sweep_job(store, dense, "test");
        FAIL() << "expected an Error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("--experts"), std::string::npos) << e.what();
    }
    SweepOptions gpu = expert_options();
    gpu.ggml_numerics = true;
    EXPECT_THROW(create_sweep_job(store, gpu, "test"), Error);
    SweepOptions sample = expert_options();
    sample.experts = false;
    sample.expert_sample = 2;
    EXPECT_THROW(create_sweep_job(store, sample, "test"), Error);
    EXPECT_FALSE(parse_expert_unit("blk.1.expert.2x"));
    EXPECT_FALSE(parse_expert_unit("blk.1.ffn_down_exps.weight"));
}

TEST(PlanTie, ExpertUnitsAreNeverChosenAndTiedRolesShareOneType) {
    SweptJob& j = swept();
    PlanRequest req;
    req.job_id = j.id;
    req.target_bpw = 6.0;
    const PlanOutcome free = plan_from_job(*j.store, req);
    for (const auto& [unit, type] : free.choices) EXPECT_FALSE(parse_expert_unit(unit)) << unit;
    for (const auto& [tensor, type] : free.recipe.tensors)
        EXPECT_EQ(tensor.find(".expert."), std::string::npos) << tensor;

    req.ties = {"ffn_.*_exps"};
    const PlanOutcome tied = plan_from_job(*j.store, req);
    std::map<std::string, std::set<GgmlType>> by_role;
    for (const auto& [tensor, type] : tied.recipe.tensors)
        for (const char* role : {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"})
            if (tensor.find(role) != std::string::npos) by_role[role].insert(type);
    ASSERT_EQ(by_role.size(), 3u);
    for (const auto& [role, types] : by_role) EXPECT_EQ(types.size(), 1u) << role;
    int tied_units = 0;
    for (const auto& [unit, type] : tied.choices) tied_units += unit.rfind("blk.*.", 0) == 0;
    EXPECT_EQ(tied_units, 3);
    EXPECT_LE(tied.recipe.predicted_size_bytes, static_cast<uint64_t>(tied.recipe.budget_value));
    // The predicted KLD still sums the members' measured ΔKLD.
    EXPECT_GT(tied.recipe.predicted_kld, 0.0);

    req.ties = {"no_such_tensor"};
    EXPECT_THROW(plan_from_job(*j.store, req), Error);
}

// An imatrix whose expert got no token: importance 1 in every column (llama.cpp), reported.
TEST(ImatrixFallback, ZeroCountExpertsAreListed) {
    const auto model = Model::open(fixture_dir("qwen3moe"));
    std::vector<ImatrixEntry> entries;
    for (const auto& t : model->tensors()) {
        if (!t.quantizable || t.name == "token_embd.weight") continue;
        ImatrixEntry e;
        e.name = t.name;
        const int64_t n_mat = t.ne.size() >= 3 ? t.ne[2] : 1;
        e.n_values = t.n_per_row() * n_mat;
        e.values.assign(static_cast<size_t>(e.n_values), 0.5f);
        e.counts.assign(static_cast<size_t>(n_mat), 100);
        if (t.name == "blk.0.ffn_down_exps.weight") e.counts[0] = 0;  // expert 0 never routed
        entries.push_back(std::move(e));
    }
    const std::string path = fresh_dir("imatrix-fallback") + "/imatrix.gguf";
    write_imatrix_gguf(path, entries, {});
    const Imatrix imatrix = Imatrix::load(path);
    const ImatrixCoverage cov = check_imatrix_coverage(imatrix, *model);
    ASSERT_EQ(cov.zero_count_matrices.size(), 1u);
    EXPECT_EQ(cov.zero_count_matrices[0].tensor, "blk.0.ffn_down_exps.weight");
    EXPECT_EQ(cov.zero_count_matrices[0].matrix, 0);
    const float* w = imatrix.importance("blk.0.ffn_down_exps.weight", 64, 8, 0);
    for (int i = 0; i < 64; ++i) EXPECT_EQ(w[i], 1.0f);
    EXPECT_EQ(imatrix.importance("blk.0.ffn_down_exps.weight", 64, 8, 1)[0], 0.5f);
}

}  // namespace
}  // namespace quantlens
