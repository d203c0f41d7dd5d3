// Rounding as a per-tensor choice (formats/recipe.h, analysis/write/rounding.h) on llama-8m:
// quantize writes each tensor of a mixed-rounding recipe byte for byte as the global switch of
// that rounding does; a rounding its inputs cannot do is refused naming the tensor; the sweep's
// selection rule evaluates only alternatives the proxy says can win, within its share; and on
// a real `sweep --rounding-choice` of llama-8m (tests/fixtures/sweeps/llama-8m-rounding.json)
// plan takes GPTQ rounding exactly where it measured better.
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>

#include "analysis/plan/plan_job.h"
#include "analysis/sweep/rounding_choice.h"
#include "analysis/sweep/sweep.h"
#include "analysis/write/gptq_rounding.h"
#include "analysis/write/quantize.h"
#include "analysis/write/rounding.h"
#include "core/error.h"
#include "core/progress.h"
#include "engine/engine.h"
#include "engine/tokenizer.h"
#include "formats/gguf.h"
#include "jobs/store.h"
#include "model/imatrix_coverage.h"
#include "model/model.h"
#include "support/test_data.h"

using namespace quantlens;
using quantlens::test_support::fresh_dir;
using quantlens::test_support::shared_path;

namespace {

struct Inputs {
    std::unique_ptr<Model> model;
    std::unique_ptr<Imatrix> imatrix;
    std::unique_ptr<GptqRounding> gptq;
};

// llama-8m with llama.cpp's imatrix and Hessians of 2 chunks of calib.txt (enough to differ).
Inputs& inputs() {
    static Inputs* in = [] {
        Progress::set_enabled(false);
        auto* x = new Inputs{};
        x->model = Model::open(shared_path("models/llama-8m"));
        x->imatrix = std::make_unique<Imatrix>(
            load_imatrix_for(*x->model, shared_path("data/llama-8m.llamacpp-imatrix.dat")));
        Engine engine(*x->model, EngineOptions{});
        x->gptq =
            std::make_unique<GptqRounding>(engine, Tokenizer::load(*x->model),
                                           GptqSettings{shared_path("data/calib.txt"), 512, 2});
        return x;
    }();
    return *in;
}

// Every tensor's bytes in a written GGUF.
std::map<std::string, std::vector<uint8_t>> tensor_bytes(const std::string& path) {
    const GgufFile f = GgufFile::open(path);
    std::map<std::string, std::vector<uint8_t>> out;
    for (const auto& t : f.tensors()) {
        const auto data = f.tensor_data(t);
        out[t.name] = std::vector<uint8_t>(data.begin(), data.end());
    }
    return out;
}

std::map<std::string, std::vector<uint8_t>> quantize_to(const std::string& path,
                                                        const Recipe& recipe, const Imatrix* im,
                                                        const GptqRounding* gptq) {
    QuantizeOptions o;
    o.output_path = path;
    o.progress = false;
    o.imatrix = im;
    o.gptq = gptq;
    quantize_model(*inputs().model, recipe, o);
    return tensor_bytes(path);
}

Recipe all_at(GgmlType type) {
    Recipe r;
    r.default_type = type;
    return r;
}

}  // namespace

// A mixed recipe writes each tensor as the global switch of its rounding writes it alone:
// plain (no --imatrix), imatrix (--imatrix), gptq (--imatrix --gptq); a tensor the recipe does
// not name follows the switches given.
TEST(Rounding, MixedRecipeWritesEachTensorAsItsRoundingAlone) {
    Inputs& in = inputs();
    const std::string dir = fresh_dir("rounding");
    // The tensors under test at Q4_K, the rest in F16 (written quickly, no rounding to choose).
    Recipe legacy = all_at(GgmlType::F16);
    for (const char* name : {"blk.0.ffn_down.weight", "blk.1.attn_v.weight", "output.weight",
                             "blk.0.attn_q.weight", "token_embd.weight", "blk.3.ffn_up.weight"})
        legacy.tensors[name] = GgmlType::Q4_K;
    const auto plain = quantize_to(dir + "/plain.gguf", legacy, nullptr, nullptr);
    const auto imat = quantize_to(dir + "/imatrix.gguf", legacy, in.imatrix.get(), nullptr);
    const auto gptq = quantize_to(dir + "/gptq.gguf", legacy, in.imatrix.get(), in.gptq.get());
    Recipe mixed = legacy;
    mixed.rounding = {{"blk.0.ffn_down.weight", Rounding::plain},
                      {"blk.1.attn_v.weight", Rounding::imatrix},
                      {"output.weight", Rounding::gptq},
                      {"blk.0.attn_q.weight", Rounding::gptq},
                      {"token_embd.weight", Rounding::imatrix}};
    const auto out = quantize_to(dir + "/mixed.gguf", mixed, in.imatrix.get(), in.gptq.get());
    for (const auto& [name, how] : mixed.rounding) {
        const auto& want = how == Rounding::plain ? plain : how == Rounding::imatrix ? imat : gptq;
        EXPECT_EQ(out.at(name), want.at(name)) << name << " " << rounding_name(how);
    }
    // The roundings really differ on these tensors, so the comparison can fail (llama.cpp's
    // imatrix has no entry for output.weight: there plain and imatrix are the same).
    for (const char* name :
         {"blk.0.ffn_down.weight", "blk.1.attn_v.weight", "blk.0.attn_q.weight"}) {
        EXPECT_NE(plain.at(name), imat.at(name)) << name;
        EXPECT_NE(imat.at(name), gptq.at(name)) << name;
    }
    EXPECT_NE(plain.at("output.weight"), gptq.at("output.weight"));
    EXPECT_EQ(out.at("blk.3.ffn_up.weight"), gptq.at("blk.3.ffn_up.weight"));  // not named
    EXPECT_EQ(out.at("blk.3.attn_norm.weight"), plain.at("blk.3.attn_norm.weight"));
}

// resolve_tensor_types refuses, naming the tensor and what is missing.
void expect_refused(const Recipe& recipe, const Imatrix* im, const GptqRounding* gptq,
                    std::initializer_list<const char*> expected) {
    QuantizeOptions o;
    o.imatrix = im;
    o.gptq = gptq;
    try {
        resolve_tensor_types(*inputs().model, recipe, o);
        FAIL() << "accepted";
    } catch (const Error& e) {
        for (const char* x : expected)
            EXPECT_NE(std::string(e.what()).find(x), std::string::npos) << e.what();
    }
}

TEST(Rounding, ARoundingItsInputsCannotDoIsRefusedByTensor) {
    Inputs& in = inputs();
    Recipe r = all_at(GgmlType::Q4_K);
    r.rounding = {{"blk.2.ffn_gate.weight", Rounding::gptq}};
    expect_refused(r, in.imatrix.get(), nullptr,
                   {"blk.2.ffn_gate.weight", "rounding gptq", "--gptq TEXT"});
    r.rounding = {{"blk.2.ffn_gate.weight", Rounding::imatrix}};
    expect_refused(r, nullptr, nullptr, {"blk.2.ffn_gate.weight", "--imatrix"});
    r.rounding = {{"token_embd.weight", Rounding::gptq}};
    expect_refused(r, in.imatrix.get(), in.gptq.get(),
                   {"token_embd.weight", "GPTQ does not cover"});
    r.rounding = {{"blk.0.attn_norm.weight", Rounding::plain}};
    expect_refused(r, nullptr, nullptr, {"blk.0.attn_norm.weight", "does not quantize"});
    r.rounding = {{"blk.99.attn_q.weight", Rounding::plain}};
    expect_refused(r, nullptr, nullptr, {"blk.99.attn_q.weight", "does not have"});
    r = all_at(GgmlType::IQ2_XS);
    r.rounding = {{"blk.0.attn_q.weight", Rounding::plain}};
    expect_refused(r, in.imatrix.get(), nullptr,
                   {"blk.0.attn_q.weight", "plain rounding cannot write it"});
}

TEST(Rounding, ItemNamesParseBack) {
    EXPECT_EQ(rounded_type_name(GgmlType::Q4_K, Rounding::gptq), "Q4_K+gptq");
    EXPECT_EQ(rounded_type_name(GgmlType::Q4_K, std::nullopt), "Q4_K");
    const auto rt = parse_rounded_type("Q5_K+plain");
    ASSERT_TRUE(rt.has_value());
    EXPECT_EQ(rt->first, GgmlType::Q5_K);
    EXPECT_EQ(rt->second, Rounding::plain);
    EXPECT_FALSE(parse_rounded_type("Q5_K").value().second.has_value());
    EXPECT_FALSE(parse_rounded_type("Q5_K+awq").has_value());
    EXPECT_FALSE(parse_rounded_type("gptq4g128").has_value());
}

// choose_roundings: per (unit, type) the alternative with the least proxy ratio, if below
// 1 + margin, scored by base ΔKLD × (1 + margin − ratio); the best scores up to the share.
TEST(Rounding, SelectionEvaluatesOnlyWhatTheProxySaysCanWin) {
    RoundingDecisions d;
    const auto put = [&](const char* unit, const char* type, double base, double alt) {
        d[{unit, type}] = {base, alt, true, false};
    };
    put("a", "Q4_K+gptq", 1.0, 0.5);                   // ratio 0.5, ΔKLD 1e-3 → score 5.5e-4
    put("a", "Q4_K+plain", 1.0, 1.01);                 // ratio 1.01: not the best of (a, Q4_K)
    put("b", "Q4_K+gptq", 1.0, 0.9);                   // ratio 0.9, ΔKLD 1e-3 → 1.5e-4
    put("c", "Q4_K+plain", 1.0, 1.02);                 // ratio 1.02 < 1.05, ΔKLD 1e-2 → 3e-4
    put("d", "Q4_K+gptq", 1.0, 1.2);                   // cannot win
    put("e", "Q6_K+gptq", 1.0, 0.5);                   // ΔKLD 1e-6 → 5.5e-7
    d[{"f", "Q4_K+gptq"}] = {1.0, 0.0, false, false};  // does not apply
    const std::map<std::pair<std::string, std::string>, double> kld = {
        {{"a", "Q4_K"}, 1e-3}, {{"b", "Q4_K"}, 1e-3}, {{"c", "Q4_K"}, 1e-2},
        {{"d", "Q4_K"}, 1e-3}, {{"e", "Q6_K"}, 1e-6}, {{"f", "Q4_K"}, 1e-2}};
    choose_roundings(d, kld, 6, {0.05, 0.5});  // at most 3 of 6 base items
    std::set<std::string> chosen;
    for (const auto& [key, v] : d)
        if (v.evaluate) chosen.insert(key.first + " " + key.second);
    EXPECT_EQ(chosen, (std::set<std::string>{"a Q4_K+gptq", "c Q4_K+plain", "b Q4_K+gptq"}));
    choose_roundings(d, kld, 6, {0.05, 1.0});  // room for every candidate: e too, never d/f
    chosen.clear();
    for (const auto& [key, v] : d)
        if (v.evaluate) chosen.insert(key.first + " " + key.second);
    EXPECT_EQ(chosen,
              (std::set<std::string>{"a Q4_K+gptq", "b Q4_K+gptq", "c Q4_K+plain", "e Q6_K+gptq"}));
}

namespace {

// A real `sweep --rounding-choice` of llama-8m (tests/fixtures/sweeps/llama-8m-rounding.json)
// loaded into a fresh store: the metrics plan reads of every item, the job's parameters.
struct RoundingJob {
    std::unique_ptr<jobs::Store> store;
    int64_t job = 0;
    nlohmann::json fx;
};

// `edit` may change the fixture's measurements before they are stored.
RoundingJob rounding_sweep_job(const std::function<void(nlohmann::json&)>& edit = {}) {
    RoundingJob f;
    f.store = std::make_unique<jobs::Store>(fresh_dir("rounding-plan") + "/jobs.sqlite");
    std::ifstream in(std::string(QL_SOURCE_DIR) + "/tests/fixtures/sweeps/llama-8m-rounding.json");
    f.fx = nlohmann::json::parse(in);
    if (edit) edit(f.fx);
    nlohmann::json params = f.fx.at("params");
    params["model"] = shared_path("models/llama-8m");
    jobs::NewJob nj;
    nj.kind = jobs::JobKind::sweep;
    nj.model = params["model"];
    nj.params = params.dump();
    f.job = f.store->create_job(nj);
    f.store->start(f.job);
    std::vector<jobs::Unit> units;
    for (const auto& u : f.fx.at("units"))
        units.push_back({u.at("name"), u.at("layer"), u.at("role"), u.at("n_params"), "{}"});
    f.store->add_units(f.job, units);
    std::vector<jobs::WorkItem> items;
    for (const auto& [unit, types] : f.fx.at("measurements").items())
        for (const auto& [type, metrics] : types.items()) items.push_back({unit, type});
    f.store->add_work_items(f.job, items);
    for (const auto& [unit, types] : f.fx.at("measurements").items())
        for (const auto& [type, metrics] : types.items()) {
            jobs::Metrics m;
            for (const auto& [k, v] : metrics.items()) m[k] = v.get<double>();
            f.store->record_item(f.job, unit, type, m);
        }
    f.store->finish(f.job);
    f.store->put_artifact(
        f.job, {"model_info", true, model_info_json(*Model::open(params["model"])).dump()});
    return f;
}

// The measured kld_mean of (unit, item), if the item was evaluated.
std::optional<double> kld(const nlohmann::json& fx, const std::string& unit,
                          const std::string& item) {
    const auto& m = fx.at("measurements").at(unit);
    if (!m.contains(item) || !m.at(item).contains("kld_mean")) return std::nullopt;
    return m.at(item).at("kld_mean").get<double>();
}

}  // namespace

// At the size of llama.cpp's Q4_K_M file, the plan rounds a tensor with GPTQ exactly where the
// sweep measured GPTQ below the base (imatrix) rounding at the chosen type, records that in
// the recipe, and predicts less KLD than the same job planned over the base rounding only.
TEST(Rounding, PlanTakesTheRoundingThatMeasuredBetter) {
    RoundingJob f = rounding_sweep_job();
    PlanRequest req;
    req.job_id = f.job;
    req.target_bytes = 5373408;
    const PlanOutcome out = plan_from_job(*f.store, req);
    std::map<Rounding, int> n;
    for (const auto& [unit, item] : out.choices) {
        const auto rt = parse_rounded_type(item);
        ASSERT_TRUE(rt.has_value()) << item;
        const std::string bare = ggml_type_display_name(rt->first);
        const Rounding how = rt->second.value_or(Rounding::imatrix);
        ++n[how];
        ASSERT_EQ(out.recipe.rounding.at(unit), how) << unit;
        ASSERT_EQ(out.recipe.tensors.at(unit), rt->first) << unit;
        const double base = kld(f.fx, unit, bare).value();
        if (rt->second) {
            EXPECT_LT(kld(f.fx, unit, item).value(), base) << unit << " " << item;
        } else {
            for (const char* alt : {"+gptq", "+plain"})
                if (const auto k = kld(f.fx, unit, bare + alt)) {
                    EXPECT_GE(*k, base) << unit << " " << bare << alt;
                }
        }
    }
    EXPECT_GT(n[Rounding::gptq], 0);
    EXPECT_GT(n[Rounding::imatrix], 0);
    PlanRequest base_req = req;
    base_req.base_rounding_only = true;
    const PlanOutcome base = plan_from_job(*f.store, base_req);
    EXPECT_TRUE(base.recipe.rounding.empty());
    EXPECT_LT(out.raw_error, base.raw_error);
    // The recipe round-trips with its roundings.
    EXPECT_EQ(parse_recipe(recipe_to_json(out.recipe), "mem").rounding, out.recipe.rounding);

    // Where GPTQ measures worse than the base rounding, the base is taken: the same sweep with
    // one chosen GPTQ item made 50 % worse than its base item.
    std::string unit, item;
    for (const auto& [u, i] : out.choices)
        if (i.find("+gptq") != std::string::npos) unit = u, item = i;
    const std::string bare = item.substr(0, item.find('+'));
    RoundingJob worse = rounding_sweep_job([&](nlohmann::json& fx) {
        auto& m = fx["measurements"][unit];
        m[item]["kld_mean"] = 1.5 * m[bare]["kld_mean"].get<double>();
    });
    req.job_id = worse.job;
    const PlanOutcome again = plan_from_job(*worse.store, req);
    for (const auto& [u, i] : again.choices)
        if (u == unit) EXPECT_NE(i, item) << unit;
}

// sweep --rounding-choice: its options survive the job's parameters (other jobs' parameters
// stay as they were), it creates one alternative item per (unit, type, rounding) it could
// apply, and without an alternative to the base rounding it is refused before a job exists.
TEST(Rounding, SweepJobCreatesTheAlternativesAndRefusesWithoutOne) {
    SweepOptions o;
    o.model = shared_path("models/llama-8m");
    o.eval_text = shared_path("data/calib.txt");
    o.types = {GgmlType::Q4_K, GgmlType::IQ2_XS};
    o.n_tokens = 512;
    EXPECT_FALSE(o.to_json().contains("rounding_choice"));
    o.rounding_choice = true;
    o.rounding_margin = 0.1;
    o.rounding_share = 0.25;
    const SweepOptions back = SweepOptions::from_json(o.to_json());
    EXPECT_TRUE(back.rounding_choice);
    EXPECT_EQ(back.rounding_margin, 0.1);
    EXPECT_EQ(back.rounding_share, 0.25);

    jobs::Store store(fresh_dir("rounding-sweep") + "/jobs.sqlite");
    try {
        create_sweep_job(store, o, "test");
        FAIL() << "a rounding choice without --imatrix or --gptq";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("--rounding-choice: give --imatrix"),
                  std::string::npos)
            << e.what();
    }
    EXPECT_TRUE(store.list_jobs().empty());
    o.imatrix = shared_path("data/llama-8m.llamacpp-imatrix.dat");
    o.gptq_text = shared_path("data/calib.txt");
    const int64_t id = create_sweep_job(store, o, "test");
    std::map<std::string, int> n;
    for (const auto& item : store.work_items(id)) ++n[item.type];
    const int units = n.at("Q4_K") - 1;  // and "(all)"
    EXPECT_EQ(n.at("Q4_K+plain"), units);
    EXPECT_EQ(n.at("Q4_K+gptq"), units);
    EXPECT_FALSE(n.count("IQ2_XS+plain"));  // needs importance: no plain rounding
    EXPECT_FALSE(n.count("IQ2_XS+gptq"));   // not a GPTQ type
    o.budget_seconds = 10;
    EXPECT_THROW(create_sweep_job(store, o, "test"), Error);
}

// The summary's cost and win lines from a job's records: on the real sweep every evaluated
// GPTQ alternative measured below its base item (87 of 87), and the cost adds the Hessians and
// proxies of the "rounding_choice" artifact to the alternatives' seconds.
TEST(Rounding, CostAndWinsComeFromTheJobsRecords) {
    RoundingJob f = rounding_sweep_job([](nlohmann::json& fx) {
        for (auto& [unit, types] : fx["measurements"].items())
            for (auto& [type, metrics] : types.items())
                metrics["seconds"] = type.find('+') == std::string::npos ? 2.0 : 1.0;
    });
    EXPECT_FALSE(rounding_cost_json(*f.store, f.job).has_value());  // no decision yet
    f.store->put_artifact(f.job, {"rounding_choice", true,
                                  R"({"proxy_seconds": 10, "hessian_seconds": 20, "items": []})"});
    const nlohmann::json c = rounding_cost_json(*f.store, f.job).value();
    EXPECT_EQ(c.at("wins").at("gptq").at("evaluated"), 87);
    EXPECT_EQ(c.at("wins").at("gptq").at("better"), 87);
    EXPECT_EQ(c.at("base_items"), 177);
    EXPECT_EQ(c.at("alternative_items"), 348);
    EXPECT_EQ(c.at("evaluated_alternatives"), 87);
    EXPECT_DOUBLE_EQ(c.at("extra_seconds").get<double>(), 348 * 1.0 + 10 + 20);
    EXPECT_DOUBLE_EQ(c.at("extra_ratio").get<double>(), (348 + 30) / (177 * 2.0));
    EXPECT_NE(rounding_cost_summary(*f.store, f.job)
                  .find("gptq measured below the base rounding in 87 of 87 evaluated items"),
              std::string::npos);
}
