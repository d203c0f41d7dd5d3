// Hostile input to the web server's commands and to the recipe files it saves (issue 20,
// server items), through the built binary: each is refused with one clear error line and
// exit code 1, quickly, never a crash (134) or an exhausted machine.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include "server/server.h"
#include "support/cli_run.h"

using namespace quantlens::cli_testing;

namespace {

void write(const std::string& path, const std::string& text) {
    std::ofstream(path, std::ios::binary) << text;
}

// A quantize that must be refused at the recipe, before any model work.
Result quantize_with_recipe(const std::string& dir, const std::string& recipe_text) {
    const std::string recipe = dir + "/r.yaml";
    write(recipe, recipe_text);
    return run_quiet("quantize " + shared_path("models/llama-8m") + " --recipe " + recipe + " -o " +
                     dir + "/out.gguf");
}

}  // namespace

// Issue 20 #9: nested aliases ("billion laughs") used to expand until std::bad_alloc (rc 134).
TEST(ServerInputs, YamlRecipeWithNestedAliasesIsRefused) {
    const std::string dir = fresh_dir("bad-server");
    std::string yaml = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
    for (int i = 1; i < 12; ++i) {
        yaml += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
        for (int k = 0; k < 10; ++k) yaml += (k ? ", *a" : "*a") + std::to_string(i - 1);
        yaml += "]\n";
    }
    yaml += "tensors: {output.weight: Q8_0}\n";
    const auto start = std::chrono::steady_clock::now();
    const Result r = quantize_with_recipe(dir, yaml);
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.out.find("aliases"), std::string::npos) << r.out;
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 10);
}

TEST(ServerInputs, DeeplyNestedRecipeIsRefused) {
    const std::string dir = fresh_dir("bad-server");
    Result r = quantize_with_recipe(dir, "tensors: {output.weight: Q8_0}\nnotes: " +
                                             std::string(500, '[') + std::string(500, ']') + "\n");
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.out.find("deeper than"), std::string::npos) << r.out;
    r = quantize_with_recipe(dir, "{\"tensors\": {\"output.weight\": \"Q8_0\"}, \"notes\": " +
                                      std::string(500, '[') + std::string(500, ']') + "}");
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.out.find("deeper than"), std::string::npos) << r.out;
}

// Issue 20 #9: keys are validated, by name, instead of being carried into files unescaped.
TEST(ServerInputs, UnknownRecipeKeysAreRefusedByName) {
    const std::string dir = fresh_dir("bad-server");
    const Result r = quantize_with_recipe(dir, "tensors: {output.weight: Q8_0}\n\"x\\ny\": 1\n");
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.out.find("unknown recipe key"), std::string::npos) << r.out;
}

// Issue 20 #8: a FIFO given as a recipe would block the reader forever.
TEST(ServerInputs, FifoRecipeIsRefused) {
    const std::string dir = fresh_dir("bad-server");
    const std::string fifo = dir + "/r.yaml";
    ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
    const Result r = run_quiet("quantize " + shared_path("models/llama-8m") + " --recipe " + fifo +
                               " -o " + dir + "/out.gguf");
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.out.find("not a regular file"), std::string::npos) << r.out;
}

// Issue 20 #10: a wildcard address used to turn the Host check off silently.
TEST(ServerInputs, WildcardHostNeedsAllowRemote) {
    const std::string dir = fresh_dir("bad-server");
    const Result r = run_quiet("serve --host 0.0.0.0 --port 0 --store " + dir + "/s.sqlite");
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.out.find("--allow-remote"), std::string::npos) << r.out;
}

// Issue 27: compare and audit from the web app. A zoo is a file of paths the server did not
// choose: hostile ones (aliases nested to a billion nodes, paths outside the allowed folders,
// not a zoo at all) are refused with a 4xx naming the problem, quickly; so is a compare
// whose quantized file lies outside.
TEST(ServerInputs, HostileZooAndCompareRequestsAreRefused) {
    const std::string dir = fresh_dir("bad-server-zoo");
    std::filesystem::create_directories(dir + "/root");
    quantlens::server::ServerOptions o;
    o.store_path = dir + "/jobs.sqlite";
    o.model_roots = {dir + "/root", shared_path("models")};
    o.recipes_dir = dir + "/recipes";
    o.job_exe = "/bin/false";  // nothing may start
    quantlens::server::Server server(o);
    std::string laughs = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
    for (int i = 1; i < 12; ++i) {
        laughs += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
        for (int k = 0; k < 10; ++k) laughs += (k ? ", *a" : "*a") + std::to_string(i - 1);
        laughs += "]\n";
    }
    write(dir + "/root/laughs.yaml", laughs + "models: *a11\ndefaults: *a11\n");
    write(dir + "/root/outside.yaml",
          "defaults: {text: /etc/hostname, types: [Q8_0]}\nmodels:\n  - {fp: " +
              shared_path("models/llama-8m") + "}\n");
    write(dir + "/root/binary.yaml", std::string("models: [\xff\xfe]\n"));
    // The shared models folder is the second root: relative paths resolve in the first.
    const std::string fp = "\"model\": \"" + shared_path("models/llama-8m") + "\"";
    const std::string quant = "\"quant\": \"" + shared_path("models/llama-8m-Q4_K_M.gguf") + "\"";
    struct Case {
        std::string body;
        int status;
        const char* says;
    };
    const std::vector<Case> cases = {
        {R"({"kind": "audit", "model": "laughs.yaml"})", 400, "zoo: "},
        {R"({"kind": "audit", "model": "outside.yaml"})", 404, "text '/etc/hostname'"},
        {R"({"kind": "audit", "model": "binary.yaml"})", 400, "zoo: "},
        {R"({"kind": "audit", "model": "/etc/hostname"})", 404, "no such file"},
        {R"({"kind": "audit", "model": ["a"]})", 400, "'model' must be a path string"},
        {R"({"kind": "compare", )" + fp + R"(, "quant": "/etc/hostname"})", 404, "quant: "},
        {R"({"kind": "compare", )" + fp + R"(, "quant": null})", 400, "'quant'"},
        {R"({"kind": "compare", )" + fp + ", " + quant + R"(, "options": {"ctx": "1; rm -rf /"}})",
         400, "--ctx"},
    };
    for (const auto& c : cases) {
        const auto start = std::chrono::steady_clock::now();
        const auto r = server.handle("POST", "/api/jobs", c.body);
        EXPECT_EQ(r.status, c.status) << c.body << " -> " << r.body;
        EXPECT_NE(r.body.find(c.says), std::string::npos) << c.body << " -> " << r.body;
        EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                  5)
            << c.body;
    }
    // Nothing ran, so no job was recorded.
    EXPECT_EQ(server.handle("GET", "/api/jobs", "").body, R"({"jobs":[]})");
}
