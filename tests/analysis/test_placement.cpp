// The layer-placement study (`sweep --placement`) on llama-8m (8 layers, 58 quantizable
// tensors): the variants' tensor lists, (base) equal to an ordinary sweep's uniform "(all)"
// item, sizes that move by exactly the ggml row sizes of the raised tensors, KLD that falls
// when tensors are raised, a resumed job equal to an uninterrupted one, and bad input.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "analysis/sweep/placement.h"
#include "analysis/sweep/sweep.h"
#include "core/error.h"
#include "core/ggml_type.h"
#include "core/progress.h"
#include "jobs/runner.h"
#include "jobs/store.h"
#include "model/model.h"
#include "support/analysis_options.h"
#include "support/test_data.h"

namespace quantlens {
namespace {

using quantlens::test_support::scratch_dir;
using quantlens::test_support::shared_dir;

using ::testing::HasSubstr;
using Key = std::tuple<std::string, std::string, std::string>;

// (base) and the ordinary sweep's "(all)" run the same fake-quantization and the same forward
// pass in the same order; only a change of summation order could move them, by rounding.
constexpr double kSamePathRelTol = 1e-12;

std::string model_path() {
    return shared_dir() + "/models/llama-8m";
}

// 512 tokens in chunks of 128: four chunks, 252 scored tokens.
SweepOptions small_placement() {
    SweepOptions o = test_support::eval_sweep(model_path(), 512, 128, {GgmlType::Q6_K});
    o.granularity = "placement";
    o.base_type = GgmlType::Q3_K;
    o.placement_n = {1, 2};
    return o;
}

std::set<std::string> layer_tensors(std::initializer_list<int> layers) {
    std::set<std::string> out;
    for (int l : layers)
        for (const char* s :
             {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"})
            out.insert("blk." + std::to_string(l) + "." + s + ".weight");
    return out;
}

std::set<std::string> role_tensors(std::initializer_list<const char*> roles) {
    std::set<std::string> out;
    for (int l = 0; l < 8; ++l)
        for (const char* s : roles) out.insert("blk." + std::to_string(l) + "." + s + ".weight");
    return out;
}

std::map<Key, double> numbers(jobs::Store& store, int64_t id) {
    std::map<Key, double> out;
    for (const auto& m : store.measurements(id)) out[{m.unit, m.type, m.metric}] = m.value;
    return out;
}

bool run(jobs::Store& store, int64_t id) {
    store.start(id);
    return jobs::run_job(store, id, [&] { return run_sweep(store, id); }) == jobs::JobState::done;
}

TEST(Placement, DefaultLayerCounts) {
    EXPECT_EQ(default_placement_n(8), (std::vector<int>{1, 2}));
    EXPECT_EQ(default_placement_n(32), (std::vector<int>{1, 4, 8}));
    EXPECT_EQ(default_placement_n(4), (std::vector<int>{1}));
    EXPECT_EQ(default_placement_n(2), (std::vector<int>{1}));
}

TEST(Placement, VariantTensorListsOfLlama8m) {
    auto model = Model::open(model_path());
    const auto units = build_placement_units(*model, {1, 2});
    std::map<std::string, std::set<std::string>> got;
    std::vector<std::string> names;
    for (const auto& u : units) {
        names.push_back(u.name);
        got[u.name] = {u.tensors.begin(), u.tensors.end()};
        EXPECT_EQ(got[u.name].size(), u.tensors.size()) << u.name << " lists a tensor twice";
    }
    EXPECT_EQ(names, (std::vector<std::string>{"(base)", "first-1", "last-1", "middle-1", "first-2",
                                               "last-2", "middle-2", "alternate", "attn-only",
                                               "ffn-only", "output", "embed"}));
    EXPECT_TRUE(got["(base)"].empty());
    EXPECT_EQ(got["first-1"], layer_tensors({0}));
    EXPECT_EQ(got["last-1"], layer_tensors({7}));
    EXPECT_EQ(got["middle-1"], layer_tensors({3}));
    EXPECT_EQ(got["first-2"], layer_tensors({0, 1}));
    EXPECT_EQ(got["last-2"], layer_tensors({6, 7}));
    EXPECT_EQ(got["middle-2"], layer_tensors({3, 4}));
    EXPECT_EQ(got["alternate"], layer_tensors({0, 2, 4, 6}));
    EXPECT_EQ(got["attn-only"], role_tensors({"attn_q", "attn_k", "attn_v", "attn_output"}));
    EXPECT_EQ(got["ffn-only"], role_tensors({"ffn_gate", "ffn_up", "ffn_down"}));
    EXPECT_EQ(got["output"], (std::set<std::string>{"output.weight"}));
    EXPECT_EQ(got["embed"], (std::set<std::string>{"token_embd.weight"}));
    // attn-only, ffn-only, output and embed partition the 58 quantizable tensors.
    EXPECT_EQ(got["attn-only"].size() + got["ffn-only"].size() + 2, 58u);

    // A 3-layer middle of 8 starts at (8-3)/2 = 2.
    const auto three = build_placement_units(*model, {3});
    EXPECT_EQ((std::set<std::string>{three[3].tensors.begin(), three[3].tensors.end()}),
              layer_tensors({2, 3, 4}));
}

TEST(Placement, TiedHeadAndExperts) {
    // tiny-qwen2 ties its head to token_embd: `output` raises that matrix and `embed` is gone.
    auto qwen = Model::open(shared_dir() + "/models/tiny-qwen2");
    std::map<std::string, std::vector<std::string>> got;
    for (const auto& u : build_placement_units(*qwen, {1})) got[u.name] = u.tensors;
    EXPECT_EQ(got["output"], (std::vector<std::string>{"token_embd.weight"}));
    EXPECT_FALSE(got.count("embed"));
    // tiny-moe: the experts and the router belong to ffn-only.
    auto moe = Model::open(shared_dir() + "/models/tiny-moe");
    for (const auto& u : build_placement_units(*moe, {1})) {
        if (u.name != "ffn-only") continue;
        std::set<std::string> roles;
        for (const auto& name : u.tensors) roles.insert(role_name(moe->get(name).role));
        EXPECT_TRUE(roles.count("expert_gate") && roles.count("expert_down")) << u.tensors.size();
        for (const auto& r : roles) EXPECT_EQ(r.rfind("attn", 0), std::string::npos) << r;
    }
}

TEST(Placement, OptionsRoundTripAndOlderJobsHaveNoBase) {
    const SweepOptions o = small_placement();
    const SweepOptions back = SweepOptions::from_json(o.to_json());
    EXPECT_EQ(back.granularity, "placement");
    EXPECT_EQ(back.base_type, GgmlType::Q3_K);
    EXPECT_EQ(back.placement_n, (std::vector<int>{1, 2}));
    SweepOptions plain = o;
    plain.granularity = "tensor";
    plain.base_type.reset();
    plain.placement_n.clear();
    const auto j = plain.to_json();
    EXPECT_FALSE(j.contains("base"));
    EXPECT_FALSE(j.contains("placement_n"));
    EXPECT_FALSE(SweepOptions::from_json(j).base_type.has_value());
}

TEST(Placement, MeasuredStudyOfLlama8m) {
    Progress::set_enabled(false);
    const std::string dir = scratch_dir("placement-study");
    const SweepOptions o = small_placement();
    auto model = Model::open(o.model);

    jobs::Store store(dir + "/jobs.sqlite");
    const int64_t id = create_sweep_job(store, o, "test");
    // (base) once at the base type, 11 variants × Q6_K, "(all)" × Q6_K.
    ASSERT_EQ(store.work_items(id).size(), 13u);
    ASSERT_TRUE(run(store, id));
    const auto got = numbers(store, id);
    auto at = [&](const std::string& unit, const std::string& type, const std::string& metric) {
        auto it = got.find({unit, type, metric});
        EXPECT_NE(it, got.end()) << unit << " " << type << " " << metric;
        return it == got.end() ? std::nan("") : it->second;
    };

    // (base) is the uniform Q3_K model: what an ordinary sweep measures as "(all)" at Q3_K.
    SweepOptions plain = o;
    plain.granularity = "layer";
    plain.base_type.reset();
    plain.placement_n.clear();
    plain.types = {GgmlType::Q3_K};
    SweepMeasurer measurer(plain);
    measurer.prepare();
    const auto uniform = measurer.measure("(all)", "Q3_K");
    for (const char* metric : {"kld_mean", "kld_max", "ppl", "top1_agree", "act_mse", "bytes"}) {
        const double a = at("(base)", "Q3_K", metric), b = uniform.at(metric);
        EXPECT_NEAR(a, b, kSamePathRelTol * std::abs(b)) << metric;
    }
    const double kld_base = at("(base)", "Q3_K", "kld_mean");
    EXPECT_GT(kld_base, 0.01);  // Q3_K hurts this model: there is something to win back

    // Bytes move by exactly the row-size difference of the raised tensors (no fallbacks:
    // llama-8m's rows of 256 and 768 hold every K-quant).
    const double bytes_base = at("(base)", "Q3_K", "bytes");
    uint64_t all_q3 = 0;
    for (const auto& t : model->tensors())
        if (t.quantizable)
            all_q3 += ggml_row_size(GgmlType::Q3_K, t.n_per_row()) * uint64_t(t.n_rows());
    EXPECT_EQ(bytes_base, static_cast<double>(all_q3));
    for (const auto& u : build_placement_units(*model, o.placement_n)) {
        if (u.name == kPlacementBaseUnit) continue;
        int64_t extra = 0;
        for (const auto& name : u.tensors) {
            const TensorInfo& t = model->get(name);
            extra += (static_cast<int64_t>(ggml_row_size(GgmlType::Q6_K, t.n_per_row())) -
                      static_cast<int64_t>(ggml_row_size(GgmlType::Q3_K, t.n_per_row()))) *
                     t.n_rows();
        }
        EXPECT_EQ(at(u.name, "Q6_K", "bytes") - bytes_base, static_cast<double>(extra)) << u.name;
        EXPECT_EQ(at(u.name, "Q6_K", "fallbacks"), 0.0) << u.name;
        // Same reference, whatever the variant.
        EXPECT_EQ(at(u.name, "Q6_K", "ppl_base"), at("(base)", "Q3_K", "ppl_base")) << u.name;
    }
    // The same for first-1 as a number, so a wrong formula on both sides cannot agree:
    // q, o 256×256, k, v 256×128, gate, up, down 256×768 = 786,432 weights, and Q6_K − Q3_K
    // is (210 − 110) bytes per 256 weights.
    EXPECT_EQ(at("first-1", "Q6_K", "bytes") - bytes_base, 786432.0 * 100 / 256);

    // Raising tensors buys KLD back on this model.
    for (const char* v : {"first-1", "first-2", "attn-only", "ffn-only", "alternate"})
        EXPECT_LT(at(v, "Q6_K", "kld_mean"), kld_base) << v;
    EXPECT_LT(at("first-2", "Q6_K", "kld_mean"), at("first-1", "Q6_K", "kld_mean"));
    EXPECT_LT(at("(all)", "Q6_K", "kld_mean"), at("alternate", "Q6_K", "kld_mean"));

    // The table: sorted by size, (base) smallest and on the frontier, "(all)" largest.
    const auto rows = placement_rows(store, id);
    ASSERT_EQ(rows.size(), 13u);
    EXPECT_EQ(rows.front().variant, "(base)");
    EXPECT_TRUE(rows.front().pareto);
    EXPECT_EQ(rows.back().variant, "(all)");
    for (size_t i = 1; i < rows.size(); ++i)
        EXPECT_LE(rows[i - 1].model_bytes, rows[i].model_bytes);
    const auto info = nlohmann::json::parse(store.get_artifact(id, "model_info")->data);
    EXPECT_DOUBLE_EQ(rows.front().model_bytes,
                     bytes_base + info.at("unquantized_bytes").get<double>());
    EXPECT_NEAR(rows.front().bpw, 8 * rows.front().model_bytes / info.at("n_params").get<double>(),
                1e-12);
    const std::string text = sweep_summary(store, id);
    EXPECT_THAT(text, HasSubstr("placement study, base type Q3_K"));
    for (const char* v :
         {"first-2", "middle-1", "attn-only", "ffn-only", "output", "embed", "(all)"})
        EXPECT_THAT(text, HasSubstr(v));
    const auto j = placement_json(store, id);
    ASSERT_EQ(j.size(), 13u);
    EXPECT_EQ(j[0]["variant"], "(base)");
    EXPECT_EQ(j[0]["kld_mean"].get<double>(), kld_base);

    // A measurer that did nothing before gets a placement item's numbers exactly (what MPI
    // workers and shards rely on).
    SweepMeasurer fresh(o);
    fresh.prepare();
    const auto m = fresh.measure("middle-2", "Q6_K");
    EXPECT_EQ(m.at("kld_mean"), at("middle-2", "Q6_K", "kld_mean"));
    EXPECT_EQ(m.at("bytes"), at("middle-2", "Q6_K", "bytes"));

    // Resume: a job interrupted after some items measures only the rest, and ends with the
    // numbers of the uninterrupted one.
    const int64_t resumed = create_sweep_job(store, o, "test");
    for (const auto& [unit, type] : std::vector<std::pair<std::string, std::string>>{
             {"(base)", "Q3_K"}, {"middle-2", "Q6_K"}}) {
        jobs::Metrics pre = fresh.measure(unit, type);
        pre["seconds"] = -1;  // a marker: re-measuring the item would overwrite it
        ASSERT_TRUE(store.record_item(resumed, unit, type, pre));
    }
    ASSERT_TRUE(run(store, resumed));
    const auto again = numbers(store, resumed);
    EXPECT_EQ(again.at({"(base)", "Q3_K", "seconds"}), -1);
    EXPECT_EQ(again.at({"middle-2", "Q6_K", "seconds"}), -1);
    ASSERT_EQ(again.size(), got.size());
    for (const auto& [key, value] : got) {
        if (std::get<2>(key) == "seconds") continue;
        EXPECT_EQ(again.at(key), value)
            << std::get<0>(key) << " " << std::get<1>(key) << " " << std::get<2>(key);
    }
}

void expect_error(const std::function<void()>& fn, const std::string& fragment) {
    try {
        fn();
        ADD_FAILURE() << "no error; expected one saying '" << fragment << "'";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr(fragment));
    }
}

TEST(Placement, BadInputIsRefusedNamingTheOption) {
    const std::string dir = scratch_dir("placement-bad");
    jobs::Store store(dir + "/jobs.sqlite");
    auto model = Model::open(model_path());
    expect_error([&] { build_placement_units(*model, {8}); },
                 "--placement-n 8: must be between 1 and 7");
    expect_error([&] { build_placement_units(*model, {0}); }, "--placement-n 0");
    expect_error([&] { build_placement_units(*model, {}); }, "--placement-n");

    SweepOptions o = small_placement();
    o.placement_n = {1, 9};
    expect_error([&] { create_sweep_job(store, o, "t"); }, "--placement-n 9");
    o = small_placement();
    o.types = {GgmlType::Q6_K, GgmlType::Q3_K};
    expect_error([&] { create_sweep_job(store, o, "t"); }, "contains the --base type Q3_K");
    o = small_placement();
    o.base_type.reset();
    expect_error([&] { create_sweep_job(store, o, "t"); }, "no --base type");
    o = small_placement();
    o.base_type = GgmlType::F32;
    expect_error([&] { create_sweep_job(store, o, "t"); }, "--base F32 cannot be used");
    o = small_placement();
    o.budget_seconds = 10;
    expect_error([&] { create_sweep_job(store, o, "t"); }, "--budget");
    o = small_placement();
    o.granularity = "tensor";
    expect_error([&] { create_sweep_job(store, o, "t"); }, "--base belongs to --placement");
    o.base_type.reset();
    expect_error([&] { create_sweep_job(store, o, "t"); }, "--placement-n belongs to --placement");
    expect_error(
        [] {
            SweepOptions::from_json(
                {{"model", "m"}, {"eval_text", "e"}, {"types", {"Q6_K"}}, {"base", "Q9_K"}});
        },
        "unknown quantization type 'Q9_K'");
    EXPECT_TRUE(store.list_jobs().empty());  // nothing half-created
}

}  // namespace
}  // namespace quantlens
