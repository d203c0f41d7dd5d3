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

// Rounding per tensor (schema version 2): written only when some tensor has one, read back
// exactly from JSON and YAML; a version-1 recipe (no "rounding") still reads, with none.
TEST(Recipe, MixedRoundingRoundTripsAndOldRecipesStillRead) {
    Recipe r = sample();
    r.rounding = {{"blk.0.attn_q.weight", Rounding::gptq},
                  {"blk.0.ffn_down.weight", Rounding::plain},
                  {"output.weight", Rounding::imatrix}};
    const std::string json = recipe_to_json(r);
    EXPECT_NE(json.find("\"version\": 2"), std::string::npos) << json;
    EXPECT_NE(json.find("\"blk.0.attn_q.weight\": \"gptq\""), std::string::npos) << json;
    for (const std::string& text : {json, recipe_to_yaml(r)}) {
        const Recipe back = parse_recipe(text, "mem");
        EXPECT_EQ(back.rounding, r.rounding);
        EXPECT_EQ(back.tensors, r.tensors);
    }
    // Without roundings the recipe stays version 1, which older quantlens reads.
    const std::string v1 = recipe_to_json(sample());
    EXPECT_NE(v1.find("\"version\": 1"), std::string::npos);
    EXPECT_EQ(v1.find("rounding"), std::string::npos);
    const Recipe old = parse_recipe(
        R"({"format": "quantlens-recipe", "version": 1, "default_type": "Q4_K",
            "tensors": {"blk.0.attn_q.weight": "Q5_K"}, "notes": []})",
        "old.json");
    EXPECT_TRUE(old.rounding.empty());
    EXPECT_EQ(old.tensors.at("blk.0.attn_q.weight"), GgmlType::Q5_K);
}

// An Error whose message holds every one of `expected`.
void expect_refused(const std::string& text, std::initializer_list<const char*> expected) {
    try {
        parse_recipe(text, "r.json");
        FAIL() << "accepted: " << text;
    } catch (const Error& e) {
        for (const char* x : expected)
            EXPECT_NE(std::string(e.what()).find(x), std::string::npos) << e.what();
    }
}

TEST(Recipe, BadRoundingIsRefusedNamingTheTensor) {
    expect_refused(
        R"({"tensors": {"blk.3.ffn_up.weight": "Q4_K"}, "rounding": {"blk.3.ffn_up.weight": "awq"}})",
        {"blk.3.ffn_up.weight", "unknown rounding \"awq\"", "plain"});
    expect_refused(R"({"tensors": {}, "rounding": {"blk.3.ffn_up.weight": 2}})",
                   {"blk.3.ffn_up.weight", "unknown rounding 2"});
    expect_refused(R"({"tensors": {}, "rounding": ["gptq"]})", {"'rounding' must be a map"});
    expect_refused(R"({"version": 3, "tensors": {}})", {"version 3 is newer"});
    expect_refused(R"({"version": "2", "tensors": {}})", {"'version' must be"});
    expect_refused(
        R"({"tensors": {}, "rounding": {"blk.0.attn_q.weight": "gptq"},
            "gptq": {"tensors": {"blk.0.attn_q.weight": "gptq4g128"}}})",
        {"'rounding' belongs to ggml 'tensors'"});
}
