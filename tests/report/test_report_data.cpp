// report_data: the JSON document the report and the web app draw, built from a store filled
// with a fake sweep of llama-8m's real tensor list (fake_sweep.h); and the HTML assembly.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <set>

#include "core/error.h"
#include "jobs/store.h"
#include "report/fake_sweep.h"
#include "report/report_data.h"
#include "report/report_html.h"
#include "report/web_assets.h"
#include "support/test_data.h"

namespace fs = std::filesystem;
using namespace quantlens;

namespace {

using quantlens::test_support::shared_dir;

// A new store in an empty directory of its own.
std::string fresh_store(const std::string& name) {
    return test_support::fresh_dir("report-" + name) + "/jobs.sqlite";
}

}  // namespace

TEST(ReportData, FakeSweepOfLlama8mHasOneCellPerUnitAndType) {
    jobs::Store store(fresh_store("cells"));
    const auto sweep = test_support::fill_fake_sweep(store, shared_dir() + "/models/llama-8m");
    const auto doc = report::build_report_data(store, sweep.job);

    // llama-8m: 8 layers × 7 matrices + token_embd + output.
    ASSERT_EQ(sweep.n_units, 58u);
    EXPECT_EQ(doc["schema_version"], 1);
    EXPECT_EQ(doc["units"].size(), 58u);
    EXPECT_EQ(doc["types"].size(), 6u);
    EXPECT_EQ(doc["cells"].size(), 58u * 6u);
    EXPECT_EQ(doc["units"][0]["name"], "token_embd.weight");
    EXPECT_EQ(doc["units"][1]["name"], "blk.0.attn_q.weight");
    EXPECT_EQ(doc["units"][1]["layer"], 0);
    EXPECT_EQ(doc["units"][1]["n_params"], 256 * 256);
    EXPECT_EQ(doc["model"]["n_layers"], 8);
    EXPECT_EQ(doc["model"]["name"], "llama-8m");

    // Types by bits per weight, from the ggml table: Q2_K = 84 bytes / 256 weights.
    EXPECT_EQ(doc["types"][0]["name"], "Q2_K");
    EXPECT_DOUBLE_EQ(doc["types"][0]["bpw"].get<double>(), 2.625);
    EXPECT_EQ(doc["types"][5]["name"], "Q8_0");
    EXPECT_DOUBLE_EQ(doc["types"][5]["bpw"].get<double>(), 8.5);
    for (size_t i = 1; i < doc["types"].size(); ++i)
        EXPECT_LT(doc["types"][i - 1]["bpw"].get<double>(), doc["types"][i]["bpw"].get<double>());

    // Every cell carries every metric the sweep stores, indices in range, no duplicates.
    std::set<std::pair<int, int>> seen;
    for (const auto& c : doc["cells"]) {
        const int u = c["u"].get<int>(), t = c["t"].get<int>();
        ASSERT_LT(u, 58);
        ASSERT_LT(t, 6);
        EXPECT_TRUE(seen.insert({u, t}).second);
        for (const char* k : {"kld_mean", "ppl_delta", "top1_agree", "act_mse", "w_rel_fro",
                              "w_cos", "w_snr_db", "w_imat_err", "bytes", "bpw"})
            EXPECT_TRUE(c["m"].contains(k)) << k;
    }
    // The measured value is the stored one: blk.0.attn_v at Q2_K.
    const auto& units = doc["units"];
    int v0 = -1;
    for (size_t i = 0; i < units.size(); ++i)
        if (units[i]["name"] == "blk.0.attn_v.weight") v0 = static_cast<int>(i);
    ASSERT_GE(v0, 0);
    for (const auto& c : doc["cells"])
        if (c["u"] == v0 && c["t"] == 0) {
            EXPECT_NEAR(c["m"]["kld_mean"].get<double>(),
                        3.0 * 2.0 * 0.05 * std::exp2(-2.0 * 2.625) + 2e-6, 1e-12);
        }

    ASSERT_EQ(doc["plans"].size(), 1u);
    EXPECT_EQ(doc["plans"][0]["name"], "mixed-4.9");
    EXPECT_EQ(doc["plans"][0]["tensors"]["blk.3.ffn_down.weight"], "Q6_K");
    EXPECT_EQ(doc["verify"]["rows"].size(), 4u);
    EXPECT_TRUE(doc["calibration"]["tensors"].contains("blk.2.attn_q.weight"));
    EXPECT_EQ(doc["job"]["state"], "done");
}

TEST(ReportData, NaNIsNullAndMissingExtrasAreNull) {
    jobs::Store store(fresh_store("nan"));
    const int64_t job = store.create_job({});
    store.start(job);
    store.record_item(job, "blk.0.attn_q.weight", "Q4_K",
                      {{"kld_mean", std::numeric_limits<double>::quiet_NaN()}, {"bpw", 4.5}});
    store.record_item(job, "blk.0.attn_q.weight", "MYSTERY", {{"bpw", 3.25}});
    const auto doc = report::build_report_data(store, job);
    ASSERT_EQ(doc["cells"].size(), 2u);
    // Unknown type names fall back to their measured bpw and still sort by it.
    EXPECT_EQ(doc["types"][0]["name"], "MYSTERY");
    EXPECT_DOUBLE_EQ(doc["types"][0]["bpw"].get<double>(), 3.25);
    for (const auto& c : doc["cells"])
        if (c["t"] == 1) {
            EXPECT_TRUE(c["m"]["kld_mean"].is_null());
        }
    EXPECT_TRUE(doc["verify"].is_null());
    EXPECT_TRUE(doc["calibration"].is_null());
    EXPECT_TRUE(doc["plans"].empty());
    // A unit known only from measurements is still listed.
    EXPECT_EQ(doc["units"].size(), 1u);
}

TEST(ReportData, BadInputsGiveClearErrors) {
    jobs::Store store(fresh_store("bad"));
    EXPECT_THROW(report::build_report_data(store, 999), Error);
    const int64_t job = store.create_job({});
    store.put_artifact(job, {"plan:broken", true, "{not json"});
    try {
        report::build_report_data(store, job);
        FAIL() << "expected Error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("plan:broken"), std::string::npos) << e.what();
    }
}

TEST(ReportHtml, InlinesEverythingAndEscapesScriptBreakouts) {
    nlohmann::json data = {{"schema_version", 1},
                           {"units", {{{"name", "</script><script>alert(1)</script>"}}}},
                           {"types", nlohmann::json::array()},
                           {"cells", nlohmann::json::array()}};
    const std::string html = report::render_report_html(data);
    EXPECT_EQ(html.find("/*QL:"), std::string::npos);
    EXPECT_NE(html.find("plotly.js v2"), std::string::npos);  // Plotly inlined
    EXPECT_NE(html.find("QLReport.mount"), std::string::npos);
    EXPECT_EQ(html.find("</script><script>alert"), std::string::npos);
    EXPECT_NE(html.find("\\u003c/script>"), std::string::npos);
    // No external resource reference outside Plotly's bundle (whose strings name URLs it never
    // fetches by itself): nothing to fetch when opened offline. The browser test checks the rest.
    std::string page = html;
    const std::string& plotly = report::plotly_js();
    page.erase(page.find(plotly), plotly.size());
    EXPECT_EQ(page.find("src=\"http"), std::string::npos);
    EXPECT_EQ(page.find("href=\"http"), std::string::npos);
    EXPECT_EQ(page.find("url(http"), std::string::npos);
    EXPECT_GT(html.size(), 3'000'000u);
}
