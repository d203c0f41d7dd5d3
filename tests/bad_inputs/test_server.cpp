// Hostile input to the web server's commands and to the recipe files it saves (issue 20,
// server items), through the built binary: each is refused with one clear error line and
// exit code 1, quickly, never a crash (134) or an exhausted machine.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <string>

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
