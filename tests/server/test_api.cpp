// The web server's API on loopback: report data, validation (4xx with a message), path
// traversal, CSRF/Host checks, a port already in use, a client disconnecting mid-SSE, 200
// concurrent requests, and a job started through POST /api/jobs reaching 100 % (run by the
// ql_test_jobs stand-in, so no model is needed).
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <map>
#include <thread>

#include "analysis/studies/verify.h"
#include "core/error.h"
#include "formats/recipe.h"
#include "jobs/store.h"
#include "report/fake_sweep.h"
#include "server/activity.h"
#include "server/safe_path.h"
#include "server/server.h"
#include "support/running_server.h"
#include "support/test_data.h"

namespace fs = std::filesystem;
using namespace quantlens;
using nlohmann::json;

namespace {

using quantlens::test_support::shared_dir;

// A server on an ephemeral port over a store holding one fake llama-8m sweep; the allowed
// roots are a temporary directory (with links to the shared models and to /etc) and the
// shared models directory.
class Api : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        // One directory per process: ctest runs each test case as its own process, in parallel.
        dir_ = fs::path(QL_TEST_TMP) / ("server-api-" + std::to_string(::getpid()));
        fs::remove_all(dir_);
        fs::create_directories(dir_ / "root");
        fs::create_directory_symlink(fs::path(shared_dir()) / "models", dir_ / "root" / "models");
        fs::create_directory_symlink("/etc", dir_ / "root" / "escape");
        std::ofstream(dir_ / "secret.txt") << "outside";
        store_path_ = (dir_ / "jobs.sqlite").string();
        {
            jobs::Store store(store_path_);
            job_ = test_support::fill_fake_sweep(store, shared_dir() + "/models/llama-8m").job;
        }
        server::ServerOptions o;
        o.store_path = store_path_;
        // As `serve --models-dir`: the symlinked models resolve into the second root.
        o.model_roots = {(dir_ / "root").string(), (fs::path(shared_dir()) / "models").string()};
        o.recipes_dir = (dir_ / "recipes").string();
        o.job_exe = std::string(QL_BINARY_DIR) + "/ql_test_jobs";
        o.threads = 16;
        o.event_poll_s = 0.05;
        server_ = new test_support::RunningServer(o);
        port_ = server_->port();
    }
    static void TearDownTestSuite() {
        delete server_;
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }

    static httplib::Client client() { return server_->client(20); }
    static httplib::Result post(const std::string& path, const json& body) {
        return client().Post(path.c_str(), body.dump(), "application/json");
    }
    static json body_of(const httplib::Result& r) { return json::parse(r->body); }
    // GET of each path answers 404 (no such job, asset or page; nothing outside the assets).
    static void expect_not_found(std::initializer_list<const char*> paths) {
        for (const char* path : paths) EXPECT_EQ(client().Get(path)->status, 404) << path;
    }

    static inline fs::path dir_;
    static inline std::string store_path_;
    static inline int64_t job_ = 0;
    static inline int port_ = 0;
    static inline test_support::RunningServer* server_ = nullptr;
};

}  // namespace

TEST_F(Api, ServesTheAppAndItsAssetsFromTheBinary) {
    auto r = client().Get("/");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_NE(r->body.find("/assets/app.js"), std::string::npos);
    r = client().Get("/assets/plotly.min.js");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_GT(r->body.size(), 3'000'000u);
    expect_not_found({"/assets/..%2Fpackage.json", "/assets/secret.txt", "/nope"});
}

TEST_F(Api, JobsAndReportData) {
    auto r = client().Get("/api/jobs");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200);
    EXPECT_GE(body_of(r)["jobs"].size(), 1u);
    r = client().Get(("/api/jobs/" + std::to_string(job_)).c_str());
    ASSERT_EQ(r->status, 200);
    EXPECT_EQ(body_of(r)["state"], "done");
    EXPECT_DOUBLE_EQ(body_of(r)["progress"]["fraction"].get<double>(), 1.0);
    r = client().Get(("/api/jobs/" + std::to_string(job_) + "/report-data").c_str());
    ASSERT_EQ(r->status, 200);
    const json doc = body_of(r);
    EXPECT_EQ(doc["units"].size(), 58u);
    EXPECT_EQ(doc["cells"].size(), 58u * 6u);
    expect_not_found({"/api/jobs/999999", "/api/jobs/999999/report-data", "/api/jobs/abc"});
}

TEST_F(Api, ModelsStayInsideTheAllowedRoots) {
    auto r = client().Get("/api/models?path=models/llama-8m");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    const json doc = body_of(r);
    EXPECT_EQ(doc["kind"], "model");
    // llama-8m: 8 layers × 9 tensors + embed + final norm + lm head = 75 HF tensors.
    EXPECT_EQ(doc["n_tensors"], 75);
    r = client().Get("/api/models?path=models");  // a symlinked directory inside the root
    ASSERT_EQ(r->status, 200);
    bool found = false;
    const json listing = body_of(r);  // keep it alive: the loop reads into it
    for (const auto& e : listing["entries"]) found |= e["name"] == "llama-8m" && e["model"] == true;
    EXPECT_TRUE(found);
    for (const char* bad : {"../secret.txt", "models/../../secret.txt", "/etc/passwd",
                            "escape/passwd", "models/../..", "%2e%2e/secret.txt"}) {
        r = client().Get(("/api/models?path=" + httplib::detail::encode_query_param(bad)).c_str());
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 404) << bad << " → " << r->status;
        EXPECT_TRUE(body_of(r).contains("error"));
        EXPECT_EQ(r->body.find("outside\""), std::string::npos);
    }
    server::PathPolicy policy(
        {(dir_ / "root").string(), (fs::path(shared_dir()) / "models").string()});
    EXPECT_FALSE(policy.resolve("../secret.txt"));
    EXPECT_FALSE(policy.resolve(std::string("models\0/x", 9)));
    EXPECT_TRUE(policy.resolve("models/llama-8m/config.json"));
    EXPECT_FALSE(policy.resolve("escape/passwd"));  // a link out of every root
}

TEST_F(Api, BadInputGetsClear4xx) {
    // Not JSON / wrong content type / cross-site Host.
    auto r = client().Post("/api/jobs", "kind=sweep", "application/x-www-form-urlencoded");
    EXPECT_EQ(r->status, 415);
    r = client().Post("/api/jobs", "{not json", "application/json");
    EXPECT_EQ(r->status, 400);
    EXPECT_NE(body_of(r)["error"].get<std::string>().find("JSON"), std::string::npos);
    httplib::Headers evil = {{"Host", "evil.example:80"}};
    EXPECT_EQ(client().Get("/api/jobs", evil)->status, 403);

    struct Case {
        json body;
        int status;
        const char* says;
    };
    const std::vector<Case> cases = {
        {{{"kind", "rm"}}, 400, "'kind' must be one of"},
        {{{"kind", "sweep"}}, 400, "'model' is required"},
        {{{"kind", "sweep"}, {"model", "../secret.txt"}}, 404, "no such file"},
        {{{"kind", "sweep"}, {"model", "models/llama-8m"}, {"options", {{"rm", "-rf"}}}},
         400,
         "option 'rm'"},
        {{{"kind", "sweep"}, {"model", "models/llama-8m"}, {"options", {{"types", "Q4_K,Q9_Z"}}}},
         400,
         "Q9_Z"},
        {{{"kind", "sweep"}, {"model", "models/llama-8m"}, {"options", {{"ctx", -5}}}},
         400,
         "--ctx"},
        {{{"kind", "sweep"},
          {"model", "models/llama-8m"},
          {"options", {{"granularity", "--evil"}}}},
         400,
         "--granularity"},
        {{{"kind", "sweep"}, {"model", "models/llama-8m"}, {"options", {{"eval", "/etc/passwd"}}}},
         404,
         "no such file"},
        {{{"kind", "plan"}, {"job", 424242}}, 400, "existing job"},
    };
    for (const auto& c : cases) {
        r = post("/api/jobs", c.body);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, c.status) << c.body.dump() << " → " << r->body;
        EXPECT_NE(r->body.find(c.says), std::string::npos) << r->body;
    }
    // Recipes: names that could escape the directory, unknown types, bad tensor names.
    const json tensors = {{"blk.0.attn_q.weight", "Q4_K"}};
    for (const char* name : {"../x", "a/b", "..", ".hidden", ""}) {
        r = post("/api/recipes", {{"name", name}, {"recipe", {{"tensors", tensors}}}});
        EXPECT_EQ(r->status, 400) << name;
    }
    r = post("/api/recipes",
             {{"name", "ok"}, {"recipe", {{"tensors", {{"blk.0.attn_q.weight", "Q9_Z"}}}}}});
    EXPECT_EQ(r->status, 400);
    EXPECT_NE(r->body.find("unknown quantization type 'Q9_Z'"), std::string::npos) << r->body;
    r = post("/api/recipes", {{"name", "ok"}, {"recipe", {{"tensors", {{"../../etc", "Q4_K"}}}}}});
    EXPECT_EQ(r->status, 400);
    EXPECT_EQ(post("/api/jobs/999999/pause", json::object())->status, 404);
    // A done job cannot be resumed: the store's state machine answers, as 409.
    r = post("/api/jobs/" + std::to_string(job_) + "/resume", json::object());
    EXPECT_EQ(r->status, 409) << r->body;
}

// The body the web app's recipe editor sends (web/src/app.js saveRecipe).
json app_recipe(int64_t job) {
    return {{"format", "quantlens-recipe"},
            {"version", 1},
            {"tensors", {{"blk.0.attn_q.weight", "q4_k"}, {"output.weight", "Q6_K"}}},
            {"model", "/m/llama-8m"},
            {"model_hash", "abc123"},
            {"job_id", job},
            {"metric", "kld"},
            {"budget", {{"kind", "manual"}, {"value", 0}}},
            {"predicted", {{"size_bytes", 1234}, {"bpw", 4.5}, {"kld", 0.01}}}};
}

TEST_F(Api, SavesRecipesAsJsonAndYaml) {
    const json recipe = app_recipe(7);
    auto r = post("/api/recipes", {{"name", "t1"}, {"format", "json"}, {"recipe", recipe}});
    ASSERT_EQ(r->status, 201) << r->body;
    const json saved = json::parse(std::ifstream(dir_ / "recipes" / "t1.json"));
    EXPECT_EQ(saved["tensors"]["blk.0.attn_q.weight"], "Q4_K");  // normalized type names
    r = post("/api/recipes", {{"name", "t1"}, {"format", "json"}, {"recipe", recipe}});
    EXPECT_EQ(r->status, 409);  // exists, no overwrite: the app asks, then resends
    r = post("/api/recipes", {{"name", "t1"}, {"format", "yaml"}, {"recipe", recipe}});
    ASSERT_EQ(r->status, 201);
    std::ifstream yaml(dir_ / "recipes" / "t1.yaml");
    const std::string text((std::istreambuf_iterator<char>(yaml)),
                           std::istreambuf_iterator<char>());
    EXPECT_NE(text.find("output.weight: \"Q6_K\""), std::string::npos) << text;
    EXPECT_NE(text.find("size_bytes: 1234"), std::string::npos) << text;
}

// Issue 19: the server wrote `job`, `size_bytes`, `predicted_kld` at the top level, which the
// recipe reader (formats/recipe) ignores; what the app saves must read back with provenance.
TEST_F(Api, SavedRecipesKeepTheirProvenance) {
    for (const char* format : {"json", "yaml"}) {
        auto r = post("/api/recipes",
                      {{"name", "prov"}, {"format", format}, {"recipe", app_recipe(job_)}});
        ASSERT_EQ(r->status, 201) << r->body;
        const Recipe back = load_recipe(body_of(r)["path"].get<std::string>());
        EXPECT_EQ(back.job_id, job_) << format;
        EXPECT_EQ(back.model_hash, "abc123") << format;
        EXPECT_EQ(back.predicted_size_bytes, 1234u) << format;
        EXPECT_DOUBLE_EQ(back.predicted_bpw, 4.5) << format;
        EXPECT_DOUBLE_EQ(back.predicted_kld, 0.01) << format;
        EXPECT_EQ(back.budget_kind, "manual") << format;
        EXPECT_EQ(back.tensors.at("output.weight"), GgmlType::Q6_K) << format;
    }
    // The old top-level spelling is refused by name instead of being dropped silently, and a
    // key cannot smuggle YAML into the file.
    json old = {{"tensors", {{"output.weight", "Q6_K"}}}, {"job", 3}};
    auto r = post("/api/recipes", {{"name", "old"}, {"format", "yaml"}, {"recipe", old}});
    EXPECT_EQ(r->status, 400);
    EXPECT_NE(r->body.find("'job'"), std::string::npos) << r->body;
    json evil = {{"tensors", {{"output.weight", "Q6_K"}}}, {"a: 1\nb", "x"}};
    r = post("/api/recipes", {{"name", "evil"}, {"format", "yaml"}, {"recipe", evil}});
    EXPECT_EQ(r->status, 400);
    EXPECT_FALSE(fs::exists(dir_ / "recipes" / "evil.yaml"));
}

TEST_F(Api, PortInUseGivesAClearError) {
    server::ServerOptions o;
    o.port = port_;
    o.store_path = store_path_;
    o.model_roots = {(dir_ / "root").string()};
    server::Server second(o);
    try {
        second.bind();
        FAIL() << "expected Error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("already in use"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find(std::to_string(port_)), std::string::npos) << e.what();
    }
}

TEST_F(Api, StartedJobStreamsProgressToOneHundredPercent) {
    auto r = post("/api/jobs", {{"kind", "sweep"},
                                {"model", "models/llama-8m"},
                                {"options", {{"types", "Q4_K,Q8_0"}, {"ctx", 64}}}});
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 202) << r->body;
    const int64_t id = body_of(r)["job"]["id"];
    // Follow the server-sent events until the stream ends.
    std::string stream;
    auto c = client();
    auto res = c.Get(("/api/jobs/" + std::to_string(id) + "/events").c_str(),
                     [&](const char* data, size_t n) {
                         stream.append(data, n);
                         return true;
                     });
    ASSERT_TRUE(res);
    EXPECT_EQ(res->get_header_value("Content-Type"), "text/event-stream");
    const size_t last = stream.rfind("data: ");
    ASSERT_NE(last, std::string::npos);
    const json final_event =
        json::parse(stream.substr(last + 6, stream.find("\n\n", last) - last - 6));
    EXPECT_EQ(final_event["state"], "done");
    EXPECT_EQ(final_event["progress"]["done"], 20);
    EXPECT_DOUBLE_EQ(final_event["progress"]["fraction"].get<double>(), 1.0);
    // Several distinct progress events were seen on the way.
    size_t events = 0;
    for (size_t at = stream.find("data: "); at != std::string::npos;
         at = stream.find("data: ", at + 1))
        ++events;
    EXPECT_GE(events, 3u);
}

TEST_F(Api, SurvivesAClientDisconnectingMidStream) {
    auto r = post("/api/jobs", {{"kind", "sweep"}, {"model", "models/llama-8m"}});
    ASSERT_EQ(r->status, 202) << r->body;
    const std::string path =
        "/api/jobs/" + std::to_string(body_of(r)["job"]["id"].get<int64_t>()) + "/events";
    for (int i = 0; i < 20; ++i) {  // more than max_event_streams: slots must be released
        auto c = client();
        int chunks = 0;
        auto res =
            c.Get(path.c_str(), [&](const char*, size_t) { return ++chunks < 1; });  // hang up
        EXPECT_FALSE(res);  // cancelled by us
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    auto h = client().Get("/api/health");
    ASSERT_TRUE(h);
    EXPECT_EQ(h->status, 200);
    // A new stream still gets a slot once the abandoned ones noticed their clients left.
    auto c = client();
    bool got = false;
    auto res = c.Get(path.c_str(), [&](const char*, size_t) {
        got = true;
        return false;
    });
    EXPECT_TRUE(got);
}

TEST_F(Api, Handles200ConcurrentRequests) {
    std::atomic<int> ok{0}, bad{0};
    std::vector<std::thread> threads;
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 200; ++i)
        threads.emplace_back([&, i] {
            httplib::Client c("127.0.0.1", port_);
            c.set_connection_timeout(10, 0);
            c.set_read_timeout(30, 0);
            const std::string path = i % 4 == 0
                                         ? "/api/jobs/" + std::to_string(job_) + "/report-data"
                                     : i % 4 == 1 ? "/api/jobs"
                                     : i % 4 == 2 ? "/api/models?path=models"
                                                  : "/api/jobs/" + std::to_string(job_);
            auto r = c.Get(path.c_str());
            (r && r->status == 200 ? ok : bad)++;
        });
    for (auto& t : threads) t.join();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_EQ(ok.load(), 200);
    EXPECT_EQ(bad.load(), 0);
    EXPECT_LT(seconds, 30.0);
    std::printf("200 concurrent requests in %.2f s\n", seconds);
}

// Issue 20 #8: every open event stream holds a worker thread; beyond the limit a stream gets
// 503 at once and /api/health keeps answering.
TEST_F(Api, EventStreamsAreBoundedAndHealthKeepsAnswering) {
    int64_t id = 0;
    {
        jobs::Store store(store_path_);
        jobs::NewJob nj;
        nj.kind = jobs::JobKind::sweep;
        id = store.create_job(nj);
        store.start(id);  // running, owned by this (live) process: its streams stay open
    }
    const std::string path = "/api/jobs/" + std::to_string(id) + "/events";
    const int limit = server::ServerOptions{}.max_event_streams;
    std::atomic<int> open{0};
    std::atomic<bool> release{false};
    std::vector<std::thread> streams;
    for (int i = 0; i < limit; ++i)
        streams.emplace_back([&] {
            auto c = client();
            bool counted = false;
            c.Get(path.c_str(), [&](const char*, size_t) {
                if (!counted) open++, counted = true;
                return !release.load();
            });
        });
    for (int i = 0; i < 200 && open < limit; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_EQ(open.load(), limit);
    auto extra = client().Get(path.c_str());
    ASSERT_TRUE(extra);
    EXPECT_EQ(extra->status, 503) << extra->body;
    for (int i = 0; i < 8; ++i) {  // more than the streams leave free if they were unbounded
        auto h = client().Get("/api/health");
        ASSERT_TRUE(h);
        EXPECT_EQ(h->status, 200);
    }
    {
        jobs::Store store(store_path_);
        store.finish(id);  // the streams end with the job
    }
    release = true;
    for (auto& t : streams) t.join();
}

// Issue 20 #8: a FIFO under a root would block the thread that opens it; it is refused from
// a stat, quickly, wherever it appears.
TEST_F(Api, FifosAreNeverOpened) {
    const fs::path fifo = dir_ / "root" / "pipe.gguf";
    fs::remove(fifo);
    ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
    const auto start = std::chrono::steady_clock::now();
    auto r = client().Get("/api/models?path=pipe.gguf");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 404);
    EXPECT_NE(r->body.find("not a regular file"), std::string::npos) << r->body;
    r = post(
        "/api/jobs",
        {{"kind", "sweep"}, {"model", "models/llama-8m"}, {"options", {{"eval", "pipe.gguf"}}}});
    EXPECT_EQ(r->status, 404) << r->body;
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 5.0);
    fs::remove(fifo);
}

// Issue 20 #10: an existing file outside the roots and an absent one get the same answer.
TEST_F(Api, OutsideTheRootsLooksAbsent) {
    auto outside = client().Get("/api/models?path=/etc/passwd");
    auto absent = client().Get("/api/models?path=/etc/no-such-file-here");
    ASSERT_TRUE(outside && absent);
    EXPECT_EQ(outside->status, absent->status);
    EXPECT_EQ(outside->status, 404);
    auto message = [](const httplib::Result& r) {
        std::string m = json::parse(r->body)["error"];
        return m.substr(0, m.rfind(':'));
    };
    EXPECT_EQ(message(outside), message(absent));
}

// Issue 20 #10: a field of the wrong JSON type is a 400 naming it, not a 500 with nlohmann's
// text.
TEST_F(Api, WrongJsonTypesAre400NamingTheField) {
    struct Case {
        const char* path;
        json body;
        const char* field;
    };
    const std::vector<Case> cases = {
        {"/api/jobs", {{"kind", 5}}, "'kind'"},
        {"/api/jobs", {{"kind", "sweep"}, {"model", 5}}, "'model'"},
        {"/api/jobs", {{"kind", "plan"}, {"job", "1"}}, "'job'"},
        {"/api/jobs",
         {{"kind", "sweep"}, {"model", "models/llama-8m"}, {"options", 3}},
         "'options'"},
        {"/api/recipes", {{"name", 5}}, "'name'"},
        {"/api/recipes", {{"name", "x"}, {"format", 5}}, "'format'"},
        {"/api/recipes",
         {{"name", "x"}, {"overwrite", "yes"}, {"recipe", app_recipe(1)}},
         "'overwrite'"},
        {"/api/recipes",
         {{"name", "x"}, {"recipe", {{"tensors", {{"output.weight", "Q6_K"}}}, {"model", 5}}}},
         "'model'"},
        {"/api/recipes",
         {{"name", "x"}, {"recipe", {{"tensors", {{"output.weight", "Q6_K"}}}, {"job_id", "7"}}}},
         "'job_id'"},
        {"/api/recipes",
         {{"name", "x"},
          {"recipe", {{"tensors", {{"output.weight", "Q6_K"}}}, {"predicted", {{"kld", "a"}}}}}},
         "'predicted.kld'"},
    };
    for (const auto& c : cases) {
        auto r = post(c.path, c.body);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 400) << c.body.dump() << " → " << r->body;
        EXPECT_NE(r->body.find(c.field), std::string::npos) << r->body;
        EXPECT_EQ(r->body.find("type_error"), std::string::npos) << r->body;
    }
}

// Issue 20 #10: a wildcard bind no longer turns the Host check off by itself.
TEST_F(Api, WildcardHostNeedsAllowRemote) {
    server::ServerOptions o;
    o.host = "0.0.0.0";
    o.port = 0;
    o.store_path = store_path_;
    o.model_roots = {(dir_ / "root").string()};
    try {
        server::Server s(o);
        FAIL() << "expected Error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("--allow-remote"), std::string::npos) << e.what();
    }
    o.allow_remote = true;
    EXPECT_NO_THROW(server::Server{o});
}

// Issue 19: the app's options come from the same table the CLI is checked against, so the
// sweep options that had drifted away from the server's copy are there.
TEST_F(Api, JobKindsComeFromTheCommandTable) {
    auto r = client().Get("/api/job-kinds");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200);
    const json kinds = body_of(r);
    for (const char* o : {"gpu", "ggml-numerics", "gptq", "eval", "types"})
        EXPECT_TRUE(kinds["sweep"]["options"].contains(o)) << o;
    EXPECT_FALSE(kinds["sweep"]["options"].contains("store"));
    EXPECT_FALSE(kinds["verify"]["options"].contains("base"));  // the model is verify's base
    EXPECT_FALSE(kinds["verify"]["options"].contains("plan"));
    EXPECT_EQ(kinds["plan"]["target"], "job");
    EXPECT_EQ(kinds["plan"]["options"]["objective"], "word");        // plan --objective mean|p99
    EXPECT_FALSE(kinds["verify"]["options"].contains("llama-cpp"));  // a local tool: CLI only
    // The eight commands of the table, plus pull (a repository and a token, server-side only).
    EXPECT_EQ(kinds["pull"]["target"], "repo");
    EXPECT_EQ(kinds["pull"]["options"], json({{"revision", "word"}}));
    // compare takes its quantized GGUF as a second path, audit a zoo file as its "model".
    EXPECT_EQ(kinds["compare"]["target"], "model");
    EXPECT_EQ(kinds["compare"]["second"], "quant");
    EXPECT_EQ(kinds["compare"]["options"]["text"], "path");
    EXPECT_EQ(kinds["compare"]["options"]["no-attribution"], "flag");
    EXPECT_FALSE(kinds["compare"]["options"].contains("store"));
    EXPECT_EQ(kinds["audit"]["model_label"], "zoo");
    EXPECT_EQ(kinds["audit"]["options"], json({{"time-limit", "number"}}));
    EXPECT_FALSE(kinds["sweep"].contains("second"));
    EXPECT_EQ(kinds.size(), 9u);
}

// A pull's repository id and token are checked before anything runs, and a refused token is
// never quoted back.
TEST_F(Api, PullRefusesBadRepoAndTokenWithoutEchoingIt) {
    auto r = post("/api/jobs", {{"kind", "pull"}, {"repo", "../etc"}});
    EXPECT_EQ(r->status, 400) << r->body;
    EXPECT_NE(r->body.find("ORG/NAME"), std::string::npos) << r->body;
    r = post("/api/jobs", {{"kind", "pull"}, {"repo", "org/name"}, {"token", "hf_Se cret"}});
    EXPECT_EQ(r->status, 400) << r->body;
    EXPECT_NE(r->body.find("'token'"), std::string::npos) << r->body;
    EXPECT_EQ(r->body.find("Se cret"), std::string::npos) << r->body;
    r = post("/api/jobs", {{"kind", "pull"}, {"repo", "org/name"}, {"model", "models/llama-8m"}});
    EXPECT_EQ(r->status, 400) << r->body;
    r = post("/api/jobs",
             {{"kind", "pull"}, {"repo", "org/name"}, {"options", {{"endpoint", "x"}}}});
    EXPECT_EQ(r->status, 400) << r->body;
    EXPECT_NE(r->body.find("option 'endpoint'"), std::string::npos) << r->body;
}

// Issue 20 #7: verify takes its base as the request's model, never as an option; options the
// command does not have are refused.
TEST_F(Api, VerifyOptionsAreTheCommandsOwn) {
    auto r = post("/api/jobs", {{"kind", "verify"},
                                {"model", "models/llama-8m"},
                                {"options", {{"base", "models/llama-8m"}}}});
    EXPECT_EQ(r->status, 400) << r->body;
    EXPECT_NE(r->body.find("option 'base'"), std::string::npos) << r->body;
    r = post("/api/jobs",
             {{"kind", "verify"}, {"model", "models/llama-8m"}, {"options", {{"plan", "knee"}}}});
    EXPECT_EQ(r->status, 400) << r->body;
    EXPECT_NE(r->body.find("option 'plan'"), std::string::npos) << r->body;
    r = post("/api/jobs", {{"kind", "eval"}, {"job", job_}});
    EXPECT_EQ(r->status, 400) << r->body;
}

// Issue 27: the app's type checkboxes come from the type table, by bits per weight, with the
// sweep's defaults ticked; nothing about types is written twice in JS.
TEST_F(Api, TypesComeFromTheTypeTableByBitsPerWeight) {
    auto r = client().Get("/api/types");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200);
    const json doc = body_of(r);
    std::vector<std::string> defaults;
    double last = 0;
    for (const auto& t : doc["types"]) {
        EXPECT_GE(t["bpw"].get<double>(), last) << t.dump();
        last = t["bpw"].get<double>();
        if (t["default"].get<bool>()) defaults.push_back(t["name"]);
        if (t["name"] == "Q4_K") EXPECT_DOUBLE_EQ(t["bpw"].get<double>(), 4.5);
        if (t["name"] == "Q6_K") EXPECT_DOUBLE_EQ(t["bpw"].get<double>(), 210.0 * 8 / 256);
    }
    EXPECT_EQ(defaults, (std::vector<std::string>{"Q2_K", "Q3_K", "IQ3_S", "IQ4_XS", "Q4_K", "Q5_K",
                                                  "Q6_K", "Q8_0"}));
    bool q4_k_m = false;
    for (const auto& p : doc["presets"]) q4_k_m |= p["name"] == "Q4_K_M";
    EXPECT_TRUE(q4_k_m);
    EXPECT_TRUE(doc["gpu"].is_boolean());
}

// The types llama.cpp's Q4_K_M gives llama-8m's tensors (as its reference file has them):
// output at Q6_K, attn_q at Q4_K, and attn_v/ffn_down raised in the layers use_more_bits picks.
TEST_F(Api, PresetTypesOfAModel) {
    auto r = client().Get("/api/presets?model=models/llama-8m&presets=Q4_K_M,Q8_0");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    const json p = body_of(r)["presets"];
    EXPECT_EQ(p["Q4_K_M"]["output.weight"], "Q6_K");
    EXPECT_EQ(p["Q4_K_M"]["blk.3.attn_q.weight"], "Q4_K");
    EXPECT_EQ(p["Q4_K_M"]["blk.0.attn_v.weight"], "Q6_K");
    EXPECT_EQ(p["Q4_K_M"]["blk.0.ffn_down.weight"], "Q6_K");
    EXPECT_EQ(p["Q8_0"]["blk.3.attn_q.weight"], "Q8_0");
    EXPECT_EQ(p["Q4_K_M"].size(), 58u);
    EXPECT_EQ(client().Get("/api/presets?model=models/llama-8m&presets=Q9_X")->status, 400);
    expect_not_found({"/api/presets?model=../secret.txt&presets=Q8_0"});
}

// The Models view shows a checkpoint as `quantlens inspect` does: config and GGUF names.
TEST_F(Api, ModelsCarryTheInspectDocument) {
    auto r = client().Get("/api/models?path=models/llama-8m");
    ASSERT_EQ(r->status, 200);
    const json doc = body_of(r);
    ASSERT_TRUE(doc.contains("inspect")) << doc.value("inspect_error", "");
    const json& ins = doc["inspect"];
    EXPECT_EQ(ins["config"]["n_layers"], 8);
    EXPECT_EQ(ins["config"]["n_heads"], 4);
    EXPECT_EQ(ins["config"]["n_kv_heads"], 2);
    EXPECT_EQ(ins["config"]["vocab"], 4096);
    EXPECT_EQ(ins["totals"]["tensors"], 75);
    EXPECT_EQ(ins["totals"]["params"], 8392960);
    bool found = false;
    for (const auto& t : ins["tensors"])
        if (t["name"] == "blk.3.ffn_down.weight") {
            found = true;
            EXPECT_EQ(t["hf_name"], "model.layers.3.mlp.down_proj.weight");
            EXPECT_EQ(t["role"], "ffn_down");
            EXPECT_EQ(t["ne"], json::array({768, 256}));
        }
    EXPECT_TRUE(found);
}

// An existing output is a 409 the app turns into a question; only "force": true (sent after
// the user said yes) goes past it. Processes the server did not start are unknown.
TEST_F(Api, ExistingOutputNeedsForce) {
    const fs::path outputs = store_path_ + ".outputs";
    std::ofstream(outputs / "taken.dat") << "keep";
    json body = {{"kind", "calibrate"},
                 {"model", "models/llama-8m"},
                 {"options", {{"text", "models/llama-8m/config.json"}, {"output", "taken.dat"}}}};
    auto r = post("/api/jobs", body);
    EXPECT_EQ(r->status, 409) << r->body;
    EXPECT_NE(r->body.find("taken.dat exists"), std::string::npos) << r->body;
    body["force"] = "yes";
    EXPECT_EQ(post("/api/jobs", body)->status, 400);
    body["force"] = true;
    r = post("/api/jobs", body);
    EXPECT_EQ(r->status, 202) << r->body;  // the stand-in records a job
    expect_not_found({"/api/processes/999999"});
}

namespace {

// Polls GET /api/jobs/:id until the job has ended; returns its state.
std::string wait_for_job(httplib::Client& c, int64_t id) {
    std::string state;
    for (int i = 0; i < 200; ++i) {
        state = json::parse(c.Get(("/api/jobs/" + std::to_string(id)).c_str())->body)["state"];
        if (state != "queued" && state != "running") break;
        std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return state;
}

}  // namespace

// Issue 27: compare (a model and its quantized GGUF) and audit (a zoo file) start from the
// app like the other kinds; what the child printed is kept for the app (GET .../output).
TEST_F(Api, CompareAndAuditStartAsJobs) {
    auto c = client();
    const std::string gguf = "models/llama-8m/config.json";  // any allowed file: a stand-in runs
    auto r =
        post("/api/jobs", {{"kind", "compare"},
                           {"model", "models/llama-8m"},
                           {"quant", gguf},
                           {"options", {{"text", gguf}, {"ctx", 64}, {"no-attribution", true}}}});
    ASSERT_EQ(r->status, 202) << r->body;
    const int64_t compare = body_of(r)["job"]["id"];
    EXPECT_EQ(body_of(r)["job"]["kind"], "compare");
    EXPECT_EQ(wait_for_job(c, compare), "done");
    EXPECT_EQ(body_of(c.Get(("/api/jobs/" + std::to_string(compare)).c_str()))["has_output"], true);
    r = c.Get(("/api/jobs/" + std::to_string(compare) + "/output").c_str());
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_NE(
        body_of(r)["output"].get<std::string>().find("job " + std::to_string(compare) + " done"),
        std::string::npos)
        << r->body;
    // A job this server did not start (one the CLI recorded) has no output it could show.
    int64_t elsewhere = 0;
    {
        jobs::Store store(store_path_);
        elsewhere = store.create_job(jobs::NewJob{});
    }
    EXPECT_EQ(body_of(c.Get(("/api/jobs/" + std::to_string(elsewhere)).c_str()))["has_output"],
              false);
    r = c.Get(("/api/jobs/" + std::to_string(elsewhere) + "/output").c_str());
    EXPECT_EQ(r->status, 404);
    EXPECT_NE(r->body.find("not started"), std::string::npos) << r->body;
    EXPECT_EQ(c.Get("/api/jobs/999999/output")->status, 404);

    // The zoo's own paths are relative to its folder and must stay inside the roots too.
    std::ofstream(dir_ / "root" / "zoo-text.txt") << "hello world\n";
    std::ofstream(dir_ / "root" / "zoo.yaml")
        << "defaults: {text: zoo-text.txt, types: [Q8_0], tokens: 64, ctx: 32}\n"
           "models:\n  - {name: l8, fp: models/llama-8m}\n";
    r = post("/api/jobs",
             {{"kind", "audit"}, {"model", "zoo.yaml"}, {"options", {{"time-limit", 60}}}});
    ASSERT_EQ(r->status, 202) << r->body;
    EXPECT_EQ(body_of(r)["job"]["kind"], "audit");
    EXPECT_NE(body_of(r)["job"]["model"].get<std::string>().find("zoo.yaml"), std::string::npos);
}

TEST_F(Api, CompareAndAuditRefuseBadRequests) {
    std::ofstream(dir_ / "root" / "zoo-out.yaml")
        << "defaults: {text: ../secret.txt, types: [Q8_0], tokens: 64, ctx: 32}\n"
           "models:\n  - {name: l8, fp: models/llama-8m}\n";
    std::ofstream(dir_ / "root" / "zoo-bad.yaml") << "models: {not: a list}\n";
    std::ofstream(dir_ / "root" / "zoo-ok.yaml")
        << "defaults: {text: models/llama-8m/config.json, types: [Q8_0], tokens: 64, ctx: 32}\n"
           "models:\n  - {name: l8, fp: models/llama-8m}\n";
    struct Case {
        json body;
        int status;
        const char* says;
    };
    const std::vector<Case> cases = {
        {{{"kind", "compare"}, {"model", "models/llama-8m"}}, 400, "'quant' (a path) is required"},
        {{{"kind", "compare"}, {"model", "models/llama-8m"}, {"quant", 7}},
         400,
         "'quant' (a path) is required"},
        {{{"kind", "compare"}, {"model", "models/llama-8m"}, {"quant", "../secret.txt"}},
         404,
         "quant: "},
        {{{"kind", "sweep"}, {"model", "models/llama-8m"}, {"quant", "models/llama-8m"}},
         400,
         "'quant' is not accepted for a sweep job"},
        {{{"kind", "compare"},
          {"model", "models/llama-8m"},
          {"quant", "models/llama-8m/config.json"},
          {"options", {{"top", "many"}}}},
         400,
         "--top"},
        {{{"kind", "compare"},
          {"model", "models/llama-8m"},
          {"quant", "models/llama-8m/config.json"},
          {"options", {{"json", true}}}},
         400,
         "option 'json'"},
        {{{"kind", "audit"}}, 400, "'model' is required for kind 'audit' (the zoo file)"},
        {{{"kind", "audit"}, {"model", "zoo-bad.yaml"}}, 400, "zoo: "},
        {{{"kind", "audit"}, {"model", "zoo-out.yaml"}}, 404, "model 'l8': text"},
        {{{"kind", "audit"}, {"model", "zoo-ok.yaml"}, {"options", {{"store", "x"}}}},
         400,
         "option 'store'"},
    };
    for (const auto& c : cases) {
        auto r = post("/api/jobs", c.body);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, c.status) << c.body.dump() << " → " << r->body;
        EXPECT_NE(r->body.find(c.says), std::string::npos) << c.body.dump() << " → " << r->body;
        // The outside file's path never comes back as readable content.
        EXPECT_EQ(r->body.find("outside"), std::string::npos) << r->body;
    }
}

// Issue 27: a pull is listed with its repository, revision and the progress its bar wrote
// (here the stand-in's: 200 of 500 kB, then a dropped connection), finished or not, so the
// app can show it and offer to resume; the token is in no reply.
TEST_F(Api, PullProgressIsListedAndResumable) {
    const std::string token = "hf_StandInToken123";
    auto r = post("/api/jobs", {{"kind", "pull"}, {"repo", "org/name"}, {"token", token}});
    ASSERT_EQ(r->status, 422) << r->body;
    EXPECT_NE(r->body.find("connection dropped"), std::string::npos) << r->body;
    const int pid = body_of(r)["pid"];
    auto c = client();
    r = c.Get(("/api/processes/" + std::to_string(pid)).c_str());
    ASSERT_EQ(r->status, 200) << r->body;
    json p = body_of(r);
    EXPECT_EQ(p["kind"], "pull");
    EXPECT_EQ(p["repo"], "org/name");
    EXPECT_EQ(p["revision"], "main");
    EXPECT_EQ(p["running"], false);
    EXPECT_EQ(p["exit_code"], 1);
    EXPECT_EQ(p["progress"],
              json({{"done", 200}, {"total", 500}, {"unit", "kB"}, {"fraction", 0.4}}));
    // Resuming is the same pull again (it continues the partial files); this one completes.
    r = post("/api/jobs",
             {{"kind", "pull"}, {"repo", "org/ok-model"}, {"options", {{"revision", "v1"}}}});
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(body_of(r)["exit_code"], 0);
    r = c.Get("/api/processes");
    ASSERT_EQ(r->status, 200);
    const json list = body_of(r)["processes"];
    ASSERT_GE(list.size(), 2u);
    EXPECT_EQ(list[0]["repo"], "org/ok-model");  // newest first
    EXPECT_EQ(list[0]["revision"], "v1");
    EXPECT_EQ(list[0]["exit_code"], 0);
    EXPECT_DOUBLE_EQ(list[0]["progress"]["fraction"].get<double>(), 1.0);
    EXPECT_EQ(list[1]["pid"], pid);
    EXPECT_EQ(r->body.find(token), std::string::npos);
    EXPECT_EQ(c.Get(("/api/processes/" + std::to_string(pid)).c_str())->body.find(token),
              std::string::npos);
}

TEST(PullProgress, ReadsTheLastBarLineOfTheRepo) {
    const std::string log =
        "pull org/a [#######.....................]  25% 250/1000 kB | 50.0 kB/s | 5s elapsed, "
        "ETA 15s\n"
        "pull org/b [##############..............]  50% 5/10 MB | 1.0 MB/s | 5s elapsed, ETA 5s\n"
        "pull org/a [##############..............]  50% 500/1000 kB | 50.0 kB/s | 10s elapsed, "
        "ETA 10s\n"
        "error: org/a: connection reset\n";
    const auto p = server::last_pull_progress(log, "org/a");
    ASSERT_TRUE(p);
    EXPECT_EQ(p->done, 500);
    EXPECT_EQ(p->total, 1000);
    EXPECT_EQ(p->unit, "kB");
    EXPECT_EQ(server::last_pull_progress(log, "org/b")->unit, "MB");
    EXPECT_FALSE(server::last_pull_progress(log, "org/c"));
    EXPECT_FALSE(server::last_pull_progress("warning: disk nearly full\n", "org/a"));
}

namespace {

// A verify table as `verify --json` writes it: recipes (listed in held_out.tuned) and presets.
json verify_table(const std::string& text, std::vector<std::pair<std::string, double>> rows,
                  std::vector<std::string> recipes) {
    json out = {{"base_ppl", 20.0}, {"n_tokens", 128}, {"rows", json::array()}};
    for (const auto& [name, kld] : rows)
        out["rows"].push_back({{"name", name},
                               {"path", "/o/" + name + ".gguf"},
                               {"size_bytes", 1000},
                               {"bpw", 4.5},
                               {"ppl", 21.0},
                               {"kld_mean", kld},
                               {"kld_p99", 10 * kld},
                               {"kld_p999", 20 * kld},
                               {"kld_max", 30 * kld},
                               {"top1", 1 - kld},
                               {"predicted_kld", kld * 0.9}});
    json tuned = json::array();
    for (const auto& r : recipes) tuned.push_back({{"name", r}, {"job_id", 1}});
    out["held_out"] = {
        {"verified_text", text}, {"verify_windows", 2}, {"verify_ctx", 64}, {"tuned", tuned}};
    return out;
}

}  // namespace

// Issue 27: verified recipes are listed with what was measured; a second verify of another
// recipe on the same text keeps the first one's row (merge_verify_tables), on other text it
// replaces it.
TEST_F(Api, VerifiedRecipesAreListedWithTheirMeasurements) {
    int64_t sweep = 0;
    {
        jobs::Store store(store_path_);
        jobs::NewJob nj;
        nj.model = "/models/verified-model";
        sweep = store.create_job(nj);
        const json first = verify_table("eval.txt", {{"mine", 0.02}, {"Q4_K_M", 0.05}}, {"mine"});
        const json second =
            verify_table("eval.txt", {{"other", 0.03}, {"Q4_K_M", 0.05}}, {"other"});
        const json merged = merge_verify_tables(first, second);
        EXPECT_EQ(merged["rows"].size(), 3u);  // other, Q4_K_M (again), mine (kept)
        EXPECT_EQ(merged["held_out"]["tuned"].size(), 2u);
        EXPECT_EQ(
            merge_verify_tables(first, verify_table("calib.txt", {{"x", 1}}, {"x"}))["rows"].size(),
            1u);
        EXPECT_EQ(merge_verify_tables(json(), second), second);
        EXPECT_EQ(merge_verify_tables(json("garbage"), second), second);
        store.put_artifact(sweep, {"verify", true, merged.dump()});
    }
    auto r = client().Get("/api/verified");
    ASSERT_EQ(r->status, 200) << r->body;
    std::map<std::string, json> mine;
    const json listed = body_of(r);
    for (const auto& row : listed["recipes"])
        if (row["job"] == sweep) mine[row["name"]] = row;
    ASSERT_EQ(mine.size(), 2u) << r->body;  // the presets are not recipes
    EXPECT_TRUE(mine.count("mine") && mine.count("other"));
    EXPECT_DOUBLE_EQ(mine["mine"]["kld_mean"].get<double>(), 0.02);
    EXPECT_DOUBLE_EQ(mine["mine"]["kld_p99"].get<double>(), 0.2);
    EXPECT_DOUBLE_EQ(mine["mine"]["kld_p999"].get<double>(), 0.4);
    EXPECT_DOUBLE_EQ(mine["mine"]["top1"].get<double>(), 0.98);
    EXPECT_DOUBLE_EQ(mine["other"]["predicted_kld"].get<double>(), 0.027);
    EXPECT_EQ(mine["other"]["model"], "/models/verified-model");
    EXPECT_EQ(mine["other"]["verified_text"], "eval.txt");
    EXPECT_EQ(mine["other"]["n_tokens"], 128);
}
