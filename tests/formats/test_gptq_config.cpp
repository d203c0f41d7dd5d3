// The GPTQ quantization_config export (formats/gptq_config.h) against a validator written
// from vLLM's and GPTQModel's documented rules (tests/support/gptq_config_validator.h):
//  - the validator rejects every value those loaders reject (the seed's 6/3/5/7-bit export
//    first among them) and accepts a well-formed config;
//  - our export of a mixed recipe is accepted and resolves every module to the planned
//    format, with embeddings, norms, the router and lm_head excluded by `-:`;
//  - a mix with a non-Marlin format gets a non-Marlin base;
//  - ggml types are refused by tensor name, never rounded to a GPTQ bit width; split fused
//    groups (q/k/v, gate/up) are refused;
//  - a GPTQ recipe round-trips through JSON and YAML.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "formats/gptq_config.h"
#include "formats/recipe.h"
#include "support/gptq_config_validator.h"

namespace quantlens {
namespace {

using test_support::check_gptq_config;
using test_support::GptqModuleFormat;

// A two-layer Llama with a MoE router in layer 1 (GGUF name, HF name).
std::vector<std::pair<std::string, std::string>> model_tensors() {
    std::vector<std::pair<std::string, std::string>> t = {
        {"token_embd.weight", "model.embed_tokens.weight"},
        {"output_norm.weight", "model.norm.weight"},
        {"output.weight", "lm_head.weight"}};
    const std::pair<const char*, const char*> per_layer[] = {
        {"attn_norm", "input_layernorm"}, {"ffn_norm", "post_attention_layernorm"},
        {"attn_q", "self_attn.q_proj"},   {"attn_k", "self_attn.k_proj"},
        {"attn_v", "self_attn.v_proj"},   {"attn_output", "self_attn.o_proj"},
        {"ffn_gate", "mlp.gate_proj"},    {"ffn_up", "mlp.up_proj"},
        {"ffn_down", "mlp.down_proj"}};
    for (int l = 0; l < 2; ++l)
        for (const auto& [g, h] : per_layer)
            t.push_back({"blk." + std::to_string(l) + "." + g + ".weight",
                         "model.layers." + std::to_string(l) + "." + h + ".weight"});
    t.push_back({"blk.1.ffn_gate_inp.weight", "model.layers.1.mlp.gate.weight"});
    return t;
}

std::vector<std::string> modules() {
    std::vector<std::string> m;
    for (const auto& [g, h] : model_tensors()) m.push_back(h.substr(0, h.rfind('.')));
    return m;
}

std::map<std::string, std::vector<std::string>> fused() {
    std::map<std::string, std::vector<std::string>> f;
    for (int l = 0; l < 2; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        f[p + "self_attn.qkv_proj"] = {p + "self_attn.q_proj", p + "self_attn.k_proj",
                                       p + "self_attn.v_proj"};
        f[p + "mlp.gate_up_proj"] = {p + "mlp.gate_proj", p + "mlp.up_proj"};
    }
    return f;
}

Recipe mixed_recipe(GptqFormat low) {
    Recipe r;
    const GptqFormat g4{4, 128, true}, g8{8, 128, true};
    for (int l = 0; l < 2; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        for (const char* t : {"attn_q", "attn_k", "attn_v"}) r.gptq_tensors[p + t + ".weight"] = g4;
        r.gptq_tensors[p + "attn_output.weight"] = l == 0 ? g8 : g4;
        for (const char* t : {"ffn_gate", "ffn_up"}) r.gptq_tensors[p + t + ".weight"] = low;
        r.gptq_tensors[p + "ffn_down.weight"] = g8;
    }
    return r;
}

std::map<std::string, GptqModuleFormat> expected_of(const Recipe& r) {
    std::map<std::string, GptqModuleFormat> e;
    for (const auto& [g, h] : model_tensors())
        if (r.gptq_tensors.count(g)) {
            const GptqFormat f = r.gptq_tensors.at(g);
            e[h.substr(0, h.rfind('.'))] = {f.bits, f.group, f.sym};
        }
    return e;
}

const char* kGood = R"({"quant_method": "gptq", "checkpoint_format": "gptq", "bits": 4,
  "group_size": 128, "sym": true, "desc_act": false, "lm_head": false,
  "dynamic": {"+:^model\\.layers\\.0\\.mlp\\.down_proj$": {"bits": 8, "group_size": 64},
              "-:^lm_head$": {}}})";

std::string with(const std::string& from, const std::string& to) {
    std::string s = kGood;
    const auto at = s.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return s.replace(at, from.size(), to);
}

TEST(GptqConfigValidator, AcceptsAGoodConfigAndRejectsWhatLoadersReject) {
    const auto m = modules();
    EXPECT_EQ(check_gptq_config(kGood, m, fused()), "");
    // The seed's export (issue 29): base 6 bits, dynamic 3/5/6/7 bits.
    EXPECT_NE(check_gptq_config(with("\"bits\": 4", "\"bits\": 6"), m), "");
    EXPECT_NE(check_gptq_config(with("\"bits\": 8", "\"bits\": 5"), m), "");
    EXPECT_NE(check_gptq_config(with("\"bits\": 8", "\"bits\": 7"), m), "");
    EXPECT_NE(check_gptq_config(with("\"group_size\": 128", "\"group_size\": 16"), m), "");
    EXPECT_NE(check_gptq_config(with("\"group_size\": 64", "\"group_size\": 256"), m), "");
    EXPECT_NE(check_gptq_config(with("\"sym\": true", "\"sym\": \"yes\""), m), "");
    EXPECT_NE(check_gptq_config(with("\"desc_act\": false", "\"desc_act\": 0"), m), "");
    EXPECT_NE(check_gptq_config(with("\"lm_head\": false", "\"lm_head\": null"), m), "");
    EXPECT_NE(check_gptq_config(with("\"quant_method\": \"gptq\"", "\"quant_method\": \"awq\""), m),
              "");
    EXPECT_NE(check_gptq_config(
                  with("\"checkpoint_format\": \"gptq\"", "\"checkpoint_format\": \"gptq_v2\""), m),
              "");
    EXPECT_NE(check_gptq_config(with("+:^model", "+:model"), m), "");        // unanchored
    EXPECT_NE(check_gptq_config(with("down_proj$", "down_proj($"), m), "");  // bad regex
    EXPECT_NE(check_gptq_config(with("\"-:^lm_head$\": {}", "\"-:^lm_head$\": {\"bits\": 4}"), m),
              "");
    EXPECT_NE(check_gptq_config(with("\"group_size\": 64}", "\"damp\": 0.1}"), m), "");
    // Marlin base with a 3-bit module; lm_head quantized while lm_head is false.
    EXPECT_NE(check_gptq_config(with("\"bits\": 8", "\"bits\": 3"), m), "");
    EXPECT_NE(check_gptq_config(with("\"-:^lm_head$\": {}", "\"+:^lm_head$\": {}"), m), "");
    // q_proj overridden alone: vLLM's qkv_proj would get the base.
    EXPECT_NE(check_gptq_config(with("mlp\\\\.down_proj", "self_attn\\\\.q_proj"), m, fused()), "");
    // Two patterns on one module.
    EXPECT_NE(check_gptq_config(with("\"-:^lm_head$\": {}",
                                     "\"-:^model\\\\.layers\\\\.0\\\\.mlp\\\\.down_proj$\": {}"),
                                m),
              "");
}

TEST(GptqConfigExport, MixedRecipeIsAcceptedAndRoundTrips) {
    for (const GptqFormat low : {GptqFormat{4, 64, true}, GptqFormat{3, 128, true},
                                 GptqFormat{4, 128, false}, GptqFormat{2, 32, false}}) {
        const Recipe r = mixed_recipe(low);
        const std::string cfg = gptq_quantization_config(r, model_tensors());
        const auto expected = expected_of(r);
        EXPECT_EQ(check_gptq_config(cfg, modules(), fused(), &expected), "")
            << gptq_format_name(low) << "\n"
            << cfg;
        const auto j = nlohmann::json::parse(cfg);
        const bool marlin_mix = low.sym && (low.bits == 4 || low.bits == 8);
        // A non-Marlin format present: the base is that format, so vLLM takes ExLlama.
        if (!marlin_mix) {
            EXPECT_EQ(j["bits"], low.bits);
            EXPECT_EQ(j["sym"], low.sym);
        }
        for (const char* ex :
             {"-:^model\\.embed_tokens$", "-:^lm_head$", "-:^model\\.norm$",
              "-:^model\\.layers\\.1\\.mlp\\.gate$", "-:^model\\.layers\\.0\\.input_layernorm$"})
            EXPECT_TRUE(j["dynamic"].contains(ex)) << ex;
        EXPECT_EQ(j["lm_head"], false);
    }
}

TEST(GptqConfigExport, RefusesWhatItCannotRepresent) {
    Recipe ggml;
    ggml.tensors["blk.0.ffn_down.weight"] = GgmlType::Q6_K;
    try {
        gptq_quantization_config(ggml, model_tensors());
        FAIL() << "a Q6_K tensor was exported to GPTQ";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("blk.0.ffn_down.weight"), std::string::npos);
        EXPECT_NE(std::string(e.what()).find("Q6_K"), std::string::npos);
    }
    Recipe split = mixed_recipe({4, 128, true});
    split.gptq_tensors["blk.0.attn_k.weight"] = {8, 128, true};
    EXPECT_THROW(gptq_quantization_config(split, model_tensors()), Error);
    Recipe partial = mixed_recipe({4, 128, true});
    partial.gptq_tensors.erase("blk.1.ffn_up.weight");
    EXPECT_THROW(gptq_quantization_config(partial, model_tensors()), Error);
}

TEST(GptqConfigExport, RecipeRoundTrip) {
    Recipe r = mixed_recipe({3, 64, false});
    r.gptq_desc_act = true;
    const Recipe back = parse_recipe(recipe_to_json(r), "r.json");
    EXPECT_EQ(back.gptq_tensors, r.gptq_tensors);
    EXPECT_TRUE(back.gptq_desc_act);
    EXPECT_TRUE(back.tensors.empty());
    const Recipe yaml = parse_recipe(recipe_to_yaml(r), "r.yaml");  // booleans arrive as text
    EXPECT_EQ(yaml.gptq_tensors, r.gptq_tensors);
    EXPECT_TRUE(yaml.gptq_desc_act);
    EXPECT_THROW(parse_recipe(R"({"tensors": {}, "gptq": {"tensors": {"a.weight": "gptq6g128"}}})",
                              "r.json"),
                 Error);
}

}  // namespace
}  // namespace quantlens
