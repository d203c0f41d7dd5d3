#include <gtest/gtest.h>

#include <filesystem>
#include <regex>

#include "core/error.h"
#include "formats/recipe.h"

using namespace quantlens;

namespace {
Recipe sample() {
    Recipe r;
    r.model = "examples/models/llama-8m";
    r.model_hash = "0123456789abcdef";
    r.job_id = 3;
    r.budget_kind = "size";
    r.budget_value = 5373408;
    r.predicted_size_bytes = 5300000;
    r.predicted_bpw = 5.05;
    r.predicted_kld = 0.0101;
    r.tensors = {{"blk.0.attn_q.weight", GgmlType::Q4_K},
                 {"blk.0.ffn_down.weight", GgmlType::Q6_K},
                 {"blk.1.attn_q.weight", GgmlType::Q4_K},
                 {"output.weight", GgmlType::Q8_0}};
    r.notes = {"note one"};
    return r;
}
}  // namespace

TEST(Recipe, JsonAndYamlRoundTrip) {
    const Recipe r = sample();
    for (const std::string& text : {recipe_to_json(r), recipe_to_yaml(r)}) {
        Recipe back = parse_recipe(text, "mem");
        EXPECT_EQ(back.tensors, r.tensors);
        EXPECT_EQ(back.model_hash, r.model_hash);
        EXPECT_EQ(back.job_id, 3);
        EXPECT_EQ(back.predicted_size_bytes, 5300000u);
        EXPECT_DOUBLE_EQ(back.predicted_kld, 0.0101);
        EXPECT_EQ(back.notes, r.notes);
    }
}

TEST(Recipe, AnchoredPatternsMatchOnlyTheirTensor) {
    const std::string p = anchored_pattern("blk.1.attn_q.weight");
    EXPECT_EQ(p, "^blk\\.1\\.attn_q\\.weight$");
    std::regex re(p);
    EXPECT_TRUE(std::regex_search("blk.1.attn_q.weight", re));
    EXPECT_FALSE(std::regex_search("blk.11.attn_q.weight", re));
    EXPECT_FALSE(std::regex_search("blk.1xattn_q.weight", re));
}

TEST(Recipe, LlamaCppExports) {
    const Recipe r = sample();
    EXPECT_EQ(r.dominant_type(), GgmlType::Q4_K);
    auto args = llama_cpp_tensor_type_args(r, GgmlType::Q4_K);
    ASSERT_EQ(args.size(), 4u);
    EXPECT_EQ(args[1], "^blk\\.0\\.ffn_down\\.weight$=q6_k");
    const std::string file = llama_cpp_tensor_type_file(r, GgmlType::Q4_K);
    EXPECT_EQ(file, "^blk\\.0\\.ffn_down\\.weight$=q6_k\n^output\\.weight$=q8_0\n");
    const std::string cmd = llama_cpp_quantize_command(r, "in.gguf", "out.gguf", "types.txt", "");
    EXPECT_NE(cmd.find("--output-tensor-type q8_0"), std::string::npos);
    EXPECT_NE(cmd.find("'in.gguf' 'out.gguf' q4_k"), std::string::npos);
}

TEST(Recipe, BadInputIsAClearError) {
    EXPECT_THROW(parse_recipe("{\"tensors\": {\"a\": \"Q9_Z\"}}", "r.json"), Error);
    EXPECT_THROW(parse_recipe("{\"nope\": 1}", "r.json"), Error);
    EXPECT_THROW(parse_recipe("{ not json", "r.json"), Error);
    EXPECT_THROW(parse_recipe("tensors: [1, 2", "r.yaml"), Error);
    try {
        parse_recipe("{\"tensors\": {\"blk.0.x\": \"Q9_Z\"}}", "r.json");
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("blk.0.x"), std::string::npos);
    }
}
