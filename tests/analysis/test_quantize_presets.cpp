// Presets: llama-quantize's per-tensor type choices, checked against the files llama.cpp
// wrote (../shared/models/*-Q4_K_M.gguf) and against hand-derived rules on tiny-qwen2.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "analysis/write/presets.h"
#include "core/error.h"
#include "formats/gguf.h"
#include "model/model.h"
#include "support/test_data.h"

using namespace quantlens;

namespace {

using quantlens::test_support::shared_dir;

// The preset recipe must give every quantized tensor of llama.cpp's file its type.
void expect_types_match(const Recipe& r, const GgufFile& ref) {
    size_t quantized = 0;
    for (const auto& t : ref.tensors()) {
        if (!llama_quantizes(t.name, t.ne)) {
            EXPECT_EQ(r.tensors.count(t.name), 0u) << t.name;
            continue;
        }
        ++quantized;
        auto it = r.tensors.find(t.name);
        ASSERT_NE(it, r.tensors.end()) << t.name;
        EXPECT_EQ(ggml_type_display_name(it->second), ggml_type_display_name(t.type)) << t.name;
    }
    EXPECT_EQ(r.tensors.size(), quantized);
}

}  // namespace

TEST(Presets, Q4KMOnLlama8mMatchesLlamaCppFile) {
    auto model = Model::open(shared_dir() + "/models/llama-8m");
    const GgufFile ref = GgufFile::open(shared_dir() + "/models/llama-8m-Q4_K_M.gguf");
    const Recipe r = preset_recipe("Q4_K_M", *model, false);
    expect_types_match(r, ref);
    EXPECT_EQ(r.budget_kind, "preset");
    EXPECT_EQ(r.budget_value, 15);
    EXPECT_TRUE(r.notes.empty());
    // use_more_bits(i, 8) picks layers 0, 3, 6, 7 for attn_v and ffn_down.
    EXPECT_EQ(r.tensors.at("blk.3.ffn_down.weight"), GgmlType::Q6_K);
    EXPECT_EQ(r.tensors.at("blk.4.ffn_down.weight"), GgmlType::Q4_K);
}

TEST(Presets, Q4KMOnTinyMoeMatchesLlamaCppFile) {
    auto model = Model::open(shared_dir() + "/models/tiny-moe");
    const GgufFile ref = GgufFile::open(shared_dir() + "/models/tiny-moe-Q4_K_M.gguf");
    expect_types_match(preset_recipe("Q4_K_M", *model, false), ref);
}

TEST(Presets, OtherPresetsFollowTheRules) {
    auto model = Model::open(shared_dir() + "/models/llama-8m");
    const Recipe q6 = preset_recipe("q6_k", *model, false);
    for (const auto& [name, type] : q6.tensors) EXPECT_EQ(type, GgmlType::Q6_K) << name;
    EXPECT_EQ(q6.budget_value, 18);

    const Recipe q8 = preset_recipe("Q8_0", *model, false);
    for (const auto& [name, type] : q8.tensors) EXPECT_EQ(type, GgmlType::Q8_0) << name;

    const Recipe q3 = preset_recipe("Q3_K_M", *model, false);
    EXPECT_EQ(q3.tensors.at("output.weight"), GgmlType::Q6_K);
    EXPECT_EQ(q3.tensors.at("token_embd.weight"), GgmlType::Q3_K);
    EXPECT_EQ(q3.tensors.at("blk.0.attn_v.weight"), GgmlType::Q5_K);  // first two attn_v
    EXPECT_EQ(q3.tensors.at("blk.1.attn_v.weight"), GgmlType::Q5_K);
    EXPECT_EQ(q3.tensors.at("blk.2.attn_v.weight"), GgmlType::Q4_K);
    EXPECT_EQ(q3.tensors.at("blk.0.ffn_down.weight"), GgmlType::Q4_K);  // n/16 = 0
    EXPECT_EQ(q3.tensors.at("blk.5.attn_output.weight"), GgmlType::Q4_K);
    EXPECT_EQ(q3.tensors.at("blk.5.attn_q.weight"), GgmlType::Q3_K);

    const Recipe q2 = preset_recipe("Q2_K", *model, false);
    EXPECT_EQ(q2.tensors.at("blk.4.attn_v.weight"), GgmlType::Q3_K);  // n_gqa = 2 < 4
    EXPECT_EQ(q2.tensors.at("blk.4.ffn_down.weight"), GgmlType::Q3_K);
    EXPECT_EQ(q2.tensors.at("blk.4.attn_output.weight"), GgmlType::Q3_K);
    EXPECT_EQ(q2.tensors.at("blk.4.ffn_up.weight"), GgmlType::Q2_K);

    // IQ4_XS without an imatrix: the first eighth of ffn_down gets Q5_K; with one it does not.
    EXPECT_EQ(preset_recipe("IQ4_XS", *model, false).tensors.at("blk.0.ffn_down.weight"),
              GgmlType::Q5_K);
    EXPECT_EQ(preset_recipe("IQ4_XS", *model, true).tensors.at("blk.0.ffn_down.weight"),
              GgmlType::IQ4_XS);
    // Q4_0 with an imatrix guards the first ffn_down with Q4_1.
    EXPECT_EQ(preset_recipe("Q4_0", *model, true).tensors.at("blk.0.ffn_down.weight"),
              GgmlType::Q4_1);
    EXPECT_EQ(preset_recipe("Q4_0", *model, false).tensors.at("blk.0.ffn_down.weight"),
              GgmlType::Q4_0);
    EXPECT_EQ(preset_recipe("IQ2_XS", *model, true).tensors.at("token_embd.weight"),
              GgmlType::Q2_K);
    EXPECT_EQ(preset_recipe("IQ2_XS", *model, true).tensors.at("output.weight"), GgmlType::Q5_K);
}

TEST(Presets, TinyQwen2FallsBackAndReportsIt) {
    auto model = Model::open(shared_dir() + "/models/tiny-qwen2");
    const Recipe r = preset_recipe("Q4_K_M", *model, false);
    // Tied embeddings: token_embd is treated as the output; its 128-wide rows are not a
    // multiple of 256, so llama.cpp uses Q8_0.
    EXPECT_EQ(r.tensors.count("output.weight"), 0u);
    EXPECT_EQ(r.tensors.at("token_embd.weight"), GgmlType::Q8_0);
    // 128- and 352-wide rows: Q4_K → Q5_0; layer 1 (the last eighth of two layers) gets
    // more bits for attn_v and ffn_down, Q6_K → Q8_0.
    EXPECT_EQ(r.tensors.at("blk.0.attn_q.weight"), GgmlType::Q5_0);
    EXPECT_EQ(r.tensors.at("blk.0.ffn_down.weight"), GgmlType::Q5_0);
    EXPECT_EQ(r.tensors.at("blk.0.attn_v.weight"), GgmlType::Q5_0);
    EXPECT_EQ(r.tensors.at("blk.1.ffn_down.weight"), GgmlType::Q8_0);
    EXPECT_EQ(r.tensors.at("blk.1.attn_v.weight"), GgmlType::Q8_0);
    bool noted = false;
    for (const auto& n : r.notes)
        if (n.rfind("blk.1.ffn_down.weight: Q6_K → Q8_0", 0) == 0) noted = true;
    EXPECT_TRUE(noted);
    EXPECT_EQ(r.notes.size(), r.tensors.size() - 1);  // every weight but token_embd fell back
}

TEST(Presets, NamesAndIds) {
    EXPECT_EQ(get_preset("q4_k_m").ftype, 15u);
    EXPECT_EQ(get_preset("Q8_0").ftype, 7u);
    EXPECT_EQ(get_preset("IQ4_XS").ftype, 30u);
    EXPECT_EQ(ftype_name(18), "Q6_K");
    EXPECT_EQ(ftype_for_dominant_type(GgmlType::Q4_K), 15u);
    EXPECT_EQ(ftype_for_dominant_type(GgmlType::Q5_K), 17u);
    EXPECT_THROW(get_preset("Q4_K_XL"), Error);
    EXPECT_TRUE(llama_quantizes("blk.0.ffn_gate_exps.weight", {256, 512, 4}));
    EXPECT_FALSE(llama_quantizes("blk.0.ffn_gate_inp.weight", {256, 4}));
    EXPECT_FALSE(llama_quantizes("blk.0.attn_norm.weight", {256}));
    EXPECT_FALSE(llama_quantizes("blk.0.attn_q.bias", {128}));
    EXPECT_FALSE(llama_quantizes("blk.0.attn_q.weight", {256, 1}));  // 1-D after trailing 1s
}

TEST(Presets, LlamaTensorOrder) {
    const std::vector<std::string> names = {"blk.10.attn_q.weight", "token_embd.weight",
                                            "blk.2.ffn_up.weight",  "blk.2.attn_k.weight",
                                            "output.weight",        "output_norm.weight"};
    const auto order = llama_tensor_order(names);
    std::vector<std::string> sorted;
    for (size_t i : order) sorted.push_back(names[i]);
    EXPECT_EQ(sorted, (std::vector<std::string>{"output.weight", "output_norm.weight",
                                                "token_embd.weight", "blk.2.attn_k.weight",
                                                "blk.2.ffn_up.weight", "blk.10.attn_q.weight"}));
}
