// Issue 20 #7: one job of every kind the app can start, run end to end by the real quantlens
// binary on llama-8m with tiny settings, through POST /api/jobs. Before, eval and quantize
// failed on the `--store` the server appended, and verify could not get its --base.
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include <nlohmann/json.hpp>

#include "jobs/store.h"
#include "server/server.h"
#include "support/running_server.h"
#include "support/test_data.h"

namespace fs = std::filesystem;
using namespace quantlens;
using namespace quantlens::test_support;
using nlohmann::json;

namespace {

class JobsEndToEnd : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = fs::path(QL_TEST_TMP) / ("server-e2e-" + std::to_string(getpid()));
        fs::remove_all(dir_);
        fs::create_directories(dir_);
        fs::create_directory_symlink(shared_dir(), dir_ / "shared");
        // Children inherit the working directory (verify once wrote its candidates there).
        previous_cwd_ = fs::current_path();
        fs::current_path(dir_);
        server::ServerOptions o;
        o.store_path = (dir_ / "jobs.sqlite").string();
        o.model_roots = {dir_.string(), shared_dir()};  // the link resolves into the second
        o.job_exe = std::string(QL_BINARY_DIR) + "/quantlens";
        o.event_poll_s = 0.05;
        server_ = std::make_unique<RunningServer>(o);
    }
    void TearDown() override {
        server_.reset();
        fs::current_path(previous_cwd_);
    }

    httplib::Result post(const json& body) {
        httplib::Client c("127.0.0.1", server_->port());
        c.set_read_timeout(60, 0);
        return c.Post("/api/jobs", body.dump(), "application/json");
    }
    // Starts a job; returns the id of the job it recorded (0 for commands that record none,
    // which must have exited 0).
    int64_t start_and_finish(const json& body) {
        auto r = post(body);
        EXPECT_TRUE(r);
        if (!r) return 0;
        EXPECT_TRUE(r->status == 200 || r->status == 202) << body.dump() << " → " << r->body;
        const json reply = json::parse(r->body);
        if (reply.contains("exit_code")) {
            EXPECT_EQ(reply["exit_code"], 0) << reply.dump();
            return 0;
        }
        EXPECT_TRUE(reply["job"].is_object()) << body.dump() << " → " << r->body;
        if (!reply["job"].is_object()) return 0;
        const int64_t id = reply["job"]["id"];
        httplib::Client c("127.0.0.1", server_->port());
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
        std::string state;
        while (std::chrono::steady_clock::now() < deadline) {
            auto j = c.Get(("/api/jobs/" + std::to_string(id)).c_str());
            state = json::parse(j->body)["state"];
            if (state != "queued" && state != "running") break;
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        EXPECT_EQ(state, "done") << body.dump();
        return id;
    }

    fs::path dir_, previous_cwd_;
    std::unique_ptr<RunningServer> server_;
};

}  // namespace

TEST_F(JobsEndToEnd, EveryKindSucceeds) {
    const std::string model = "shared/models/llama-8m", text = "shared/data/eval.txt";
    const int64_t calibrate = start_and_finish(
        {{"kind", "calibrate"},
         {"model", model},
         {"options", {{"text", text}, {"ctx", 64}, {"chunks", 1}, {"output", "im.dat"}}}});
    EXPECT_GT(calibrate, 0);
    // Job outputs land only in the server's own folder (default <store>.outputs).
    const fs::path outputs = dir_ / "jobs.sqlite.outputs";
    EXPECT_TRUE(fs::exists(outputs / "im.dat"));
    const int64_t sweep = start_and_finish({{"kind", "sweep"},
                                            {"model", model},
                                            {"options",
                                             {{"eval", text},
                                              {"types", "Q8_0,Q4_K"},
                                              {"granularity", "class"},
                                              {"tokens", 64},
                                              {"ctx", 64},
                                              {"no-uniform", true}}}});
    ASSERT_GT(sweep, 0);
    EXPECT_EQ(start_and_finish({{"kind", "plan"}, {"job", sweep}, {"options", {{"knee", true}}}}),
              0);
    EXPECT_EQ(start_and_finish({{"kind", "quantize"},
                                {"model", model},
                                {"options", {{"preset", "Q8_0"}, {"output", "q8.gguf"}}}}),
              0);
    EXPECT_TRUE(fs::exists(outputs / "q8.gguf"));
    EXPECT_EQ(start_and_finish({{"kind", "eval"},
                                {"model", "jobs.sqlite.outputs/q8.gguf"},
                                {"options", {{"text", text}, {"ctx", 64}, {"chunks", 1}}}}),
              0);
    EXPECT_EQ(start_and_finish(
                  {{"kind", "verify"},
                   {"model", model},
                   {"job", sweep},
                   {"options", {{"text", text}, {"presets", "Q8_0"}, {"ctx", 64}, {"chunks", 1}}}}),
              0);
    // verify's candidates are written inside the output folder, not the server's cwd.
    EXPECT_TRUE(fs::exists(outputs / "verify" / "Q8_0.gguf"));
    EXPECT_FALSE(fs::exists(dir_ / "quantlens-verify"));
    // A second verify on the same text joins the job's table (issue 27: the app lists every
    // verified candidate): Q8_0 from the first run stays beside Q4_0.
    EXPECT_EQ(start_and_finish(
                  {{"kind", "verify"},
                   {"model", model},
                   {"job", sweep},
                   {"options", {{"text", text}, {"presets", "Q4_0"}, {"ctx", 64}, {"chunks", 1}}}}),
              0);
    jobs::Store store((dir_ / "jobs.sqlite").string());
    const auto table = store.get_artifact(sweep, "verify");  // verify --job stored it
    ASSERT_TRUE(table.has_value());
    std::vector<std::string> rows;
    const json doc = json::parse(table->data);
    for (const auto& r : doc["rows"]) rows.push_back(r["name"]);
    EXPECT_EQ(rows, (std::vector<std::string>{"Q4_0", "Q8_0"}));
}

// Issue 19: a sweep refused for its options (--experts with --ggml-numerics; --gpu without
// CUDA) used to be refused after its job row existed, leaving a failed job in the store.
TEST_F(JobsEndToEnd, RefusedSweepLeavesNoJob) {
    auto r =
        post({{"kind", "sweep"},
              {"model", "shared/models/llama-8m"},
              {"options",
               {{"eval", "shared/data/eval.txt"}, {"ggml-numerics", true}, {"experts", true}}}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 422) << r->body;
    EXPECT_NE(r->body.find("not with --ggml-numerics"), std::string::npos) << r->body;
    jobs::Store store((dir_ / "jobs.sqlite").string());
    EXPECT_TRUE(store.list_jobs().empty());
}

// What a command prints on stdout reaches its log and the reply (its stdout was once opened
// close-on-exec, so it was closed by the exec and only stderr survived).
TEST_F(JobsEndToEnd, StdoutReachesTheReply) {
    auto r = post({{"kind", "eval"},
                   {"model", "shared/models/llama-8m"},
                   {"options", {{"text", "shared/data/eval.txt"}, {"ctx", 64}, {"chunks", 1}}}});
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    const std::string output = json::parse(r->body)["output"];
    EXPECT_NE(output.find("PPL"), std::string::npos) << output;
}
