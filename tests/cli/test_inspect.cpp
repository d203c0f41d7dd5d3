// `quantlens inspect` end to end: runs the built binary on the shared models and checks
// the reported figures (issue acceptance: llama-8m has 8,392,960 params, 75 tensors,
// 8 layers; the llama.cpp GGUF has the same names and shapes with its ggml types).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "support/cli_run.h"

using namespace quantlens::cli_testing;
using CliResult = Result;

namespace {

nlohmann::json inspect_json(const std::string& model) {
    const CliResult r = run_cli("inspect --json " + model);
    EXPECT_EQ(r.code, 0) << r.out;
    return nlohmann::json::parse(r.out);
}

}  // namespace

TEST(CliInspect, LlamaHfTable) {
    const CliResult r = run_cli("inspect " + shared_path("models/llama-8m"));
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("75 tensors, 8 layers, 8392960 params"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("model.layers.3.self_attn.q_proj.weight"), std::string::npos);
    EXPECT_NE(r.out.find("blk.3.attn_q.weight"), std::string::npos);
    EXPECT_NE(r.out.find("16.000 bits per weight"), std::string::npos);  // BF16
}

TEST(CliInspect, GgufHasSameNamesAndShapes) {
    const auto hf = inspect_json(shared_path("models/llama-8m"));
    const auto gg = inspect_json(shared_path("models/llama-8m-Q4_K_M.gguf"));
    EXPECT_EQ(hf["totals"]["params"], 8392960);
    EXPECT_EQ(hf["totals"]["tensors"], 75);
    EXPECT_EQ(hf["totals"]["layers"], 8);
    EXPECT_EQ(gg["totals"]["params"], 8392960);
    EXPECT_EQ(gg["source"], "gguf");
    std::map<std::string, nlohmann::json> hf_shapes, gg_shapes;
    std::map<std::string, std::string> gg_types;
    for (const auto& t : hf["tensors"]) hf_shapes[t["name"]] = t["ne"];
    for (const auto& t : gg["tensors"]) {
        gg_shapes[t["name"]] = t["ne"];
        gg_types[t["name"]] = t["type"];
    }
    EXPECT_EQ(hf_shapes, gg_shapes);
    EXPECT_EQ(gg_types["blk.0.attn_q.weight"], "Q4_K");
    EXPECT_EQ(gg_types["output_norm.weight"], "F32");
    const double bpw = gg["totals"]["bits_per_weight"];
    EXPECT_GT(bpw, 4.5);  // Q4_K_M mixes Q4_K (4.5) with Q6_K (6.56) and F32 norms
    EXPECT_LT(bpw, 6.0);
}

TEST(CliInspect, MoeAndQwen2) {
    const auto moe = inspect_json(shared_path("models/tiny-moe"));
    bool found = false;
    for (const auto& t : moe["tensors"]) {
        if (t["name"] == "blk.0.ffn_gate_exps.weight") {
            found = true;
            EXPECT_EQ(t["ne"], nlohmann::json({256, 512, 4}));
            EXPECT_EQ(t["role"], "expert_gate");
        }
        if (t["name"] == "blk.0.ffn_gate_inp.weight") {
            EXPECT_EQ(t["quantizable"], false);
        }
    }
    EXPECT_TRUE(found);
    const auto qwen = inspect_json(shared_path("models/tiny-qwen2"));
    EXPECT_EQ(qwen["config"]["tie_embeddings"], true);
    EXPECT_EQ(qwen["totals"]["tensors"], 26);
}

TEST(CliInspect, BadInputIsOneLineError) {
    const CliResult r = run_cli("inspect " + shared_path("models/llama-8m/tokenizer.json"));
    EXPECT_EQ(r.code, 1);
    EXPECT_EQ(r.out.rfind("error: ", 0), 0u) << r.out;
    EXPECT_NE(r.out.find("tokenizer.json"), std::string::npos) << r.out;
}
