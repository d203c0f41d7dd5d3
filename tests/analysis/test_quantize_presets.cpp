// Presets: llama-quantize's per-tensor type choices, checked against the files llama.cpp
// wrote (../shared/models/*-Q4_K_M.gguf) and against hand-derived rules on tiny-qwen2.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "analysis/write/presets.h"
#include "core/error.h"
#include "formats/gguf.h"
#include "formats/model_config.h"
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

namespace {

// The tensors of a Gemma 3 1B-shaped model (hidden 1152, 4 heads of 256, 1 kv head, FFN
// 6912, tied embeddings), as the gemma3 family names them.
std::vector<TensorInfo> gemma3_1b_tensors(const ModelConfig& c) {
    std::vector<TensorInfo> out;
    auto add = [&](const std::string& name, std::vector<int64_t> ne) {
        TensorInfo t;
        t.name = name;
        t.ne = std::move(ne);
        t.type = GgmlType::BF16;
        out.push_back(t);
    };
    add("token_embd.weight", {c.hidden, c.vocab});
    add("output_norm.weight", {c.hidden});
    for (int64_t l = 0; l < c.n_layers; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        for (const char* n : {"attn_norm", "post_attention_norm", "ffn_norm", "post_ffw_norm"})
            add(p + n + ".weight", {c.hidden});
        add(p + "attn_q_norm.weight", {c.head_dim});
        add(p + "attn_k_norm.weight", {c.head_dim});
        add(p + "attn_q.weight", {c.hidden, c.n_heads * c.head_dim});
        add(p + "attn_k.weight", {c.hidden, c.n_kv_heads * c.head_dim});
        add(p + "attn_v.weight", {c.hidden, c.n_kv_heads * c.head_dim});
        add(p + "attn_output.weight", {c.n_heads * c.head_dim, c.hidden});
        add(p + "ffn_gate.weight", {c.hidden, c.ffn});
        add(p + "ffn_up.weight", {c.hidden, c.ffn});
        add(p + "ffn_down.weight", {c.ffn, c.hidden});
    }
    return out;
}

}  // namespace

// Gemma 3 1B's rows of 1152 are not a multiple of 256: llama-quantize's Q4_K_M rules, then
// its fallbacks (Q4_K → Q5_0, Q6_K → Q8_0), derived by hand from llama_tensor_get_type.
TEST(Presets, Gemma3OneBillionFallsBackOnRowsOf1152) {
    const ModelConfig c = parse_hf_config(
        R"({"architectures":["Gemma3ForCausalLM"],"hidden_size":1152,"num_hidden_layers":26,)"
        R"("num_attention_heads":4,"num_key_value_heads":1,"head_dim":256,)"
        R"("intermediate_size":6912,"vocab_size":262144,"query_pre_attn_scalar":256,)"
        R"("sliding_window":512,"tie_word_embeddings":true})",
        "gemma3-1b/config.json");
    const Recipe r = preset_recipe(get_preset("Q4_K_M"), c, gemma3_1b_tensors(c), false);
    auto type = [&](const std::string& n) { return ggml_type_display_name(r.tensors.at(n)); };
    // Tied embeddings are the output: Q6_K, which 1152 does not fit → Q8_0.
    EXPECT_EQ(type("token_embd.weight"), "Q8_0");
    EXPECT_EQ(type("blk.5.attn_q.weight"), "Q5_0");
    EXPECT_EQ(type("blk.5.attn_k.weight"), "Q5_0");
    EXPECT_EQ(type("blk.5.ffn_gate.weight"), "Q5_0");
    EXPECT_EQ(type("blk.5.ffn_up.weight"), "Q5_0");
    EXPECT_EQ(type("blk.5.attn_output.weight"), "Q4_K");  // rows of 1024
    // attn_v and ffn_down: Q6_K in the layers use_more_bits picks (0..2, 5, 8, ..., 22..25).
    EXPECT_EQ(type("blk.0.attn_v.weight"), "Q8_0");
    EXPECT_EQ(type("blk.4.attn_v.weight"), "Q5_0");
    EXPECT_EQ(type("blk.0.ffn_down.weight"), "Q6_K");  // rows of 6912 = 27 × 256
    EXPECT_EQ(type("blk.4.ffn_down.weight"), "Q4_K");
    EXPECT_EQ(r.tensors.count("blk.0.attn_q_norm.weight"), 0u);
    EXPECT_EQ(r.tensors.count("blk.0.post_ffw_norm.weight"), 0u);
    EXPECT_FALSE(r.notes.empty());
}

// Gemma 2 2B's rows of 2304 = 9 × 256 fit: its tied token_embd gets the output's Q6_K.
TEST(Presets, Gemma2TiedEmbeddingsGetTheOutputType) {
    const ModelConfig c = parse_hf_config(
        R"({"architectures":["Gemma2ForCausalLM"],"hidden_size":2304,"num_hidden_layers":2,)"
        R"("num_attention_heads":8,"num_key_value_heads":4,"head_dim":256,)"
        R"("intermediate_size":9216,"vocab_size":1000,"tie_word_embeddings":true})",
        "gemma2-2b/config.json");
    TensorInfo embd;
    embd.name = "token_embd.weight";
    embd.ne = {2304, 1000};
    embd.type = GgmlType::BF16;
    const Recipe r = preset_recipe(get_preset("Q4_K_M"), c, {embd}, false);
    EXPECT_EQ(ggml_type_display_name(r.tensors.at("token_embd.weight")), "Q6_K");
}
