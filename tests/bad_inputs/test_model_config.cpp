// Hostile-input catalogue, issue 20 item 3: configs the engine would compute wrongly are
// refused with the key and value named, from config.json (v4 and v5 styles) and from GGUF
// metadata. Before the fix every one of these loaded and gave silently wrong logits.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mmap_file.h"
#include "formats/gguf.h"
#include "formats/model_config.h"
#include "support/cli_run.h"

namespace quantlens {
namespace {

using nlohmann::json;

json llama_config() {
    return json::parse(read_text_file(cli_testing::shared_path("models/llama-8m/config.json")));
}

// parse_hf_config's error text, or "" when it accepts the config.
std::string refusal(const json& config) {
    try {
        parse_hf_config(config.dump(), "cfg/config.json");
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

struct ConfigCase {
    const char* name;
    std::function<void(json&)> edit;
    std::vector<const char*> message;  // every part must appear in the error
};

TEST(BadConfig, RefusedNamingKeyAndValue) {
    const std::vector<ConfigCase> cases = {
        {"yarn rope (v5) without its original context",
         [](json& c) {
             c["rope_parameters"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
         },
         {"cfg/config.json", "yarn", "original_max_position_embeddings", "rope_parameters"}},
        {"yarn rope with DeepSeek's mscale",
         [](json& c) {
             c["rope_parameters"] = {{"rope_type", "yarn"},
                                     {"factor", 4.0},
                                     {"original_max_position_embeddings", 64},
                                     {"mscale", 0.707}};
         },
         {"cfg/config.json", "rope_parameters.mscale"}},
        {"linear rope without a factor (v4)",
         [](json& c) {
             c["rope_scaling"] = {{"type", "linear"}};
             c.erase("rope_parameters");
         },
         {"rope_scaling.factor", "linear"}},
        {"dynamic rope (v4)",
         [](json& c) {
             c["rope_scaling"] = {{"rope_type", "dynamic"}, {"factor", 2.0}};
             c.erase("rope_parameters");
         },
         {"dynamic"}},
        {"per-layer-type rope of an unknown layer type",
         [](json& c) {
             c["rope_parameters"] = {{"full_attention", {{"rope_type", "default"}}},
                                     {"chunked_attention", {{"rope_type", "default"}}}};
         },
         {"per-layer-type", "chunked_attention"}},
        {"scaled rope of sliding layers",
         [](json& c) {
             c["rope_parameters"] = {
                 {"full_attention", {{"rope_type", "default"}}},
                 {"sliding_attention", {{"rope_type", "linear"}, {"factor", 2.0}}}};
         },
         {"rope_parameters.sliding_attention", "scales"}},
        {"longrope with too few factors",
         [](json& c) {
             c["architectures"] = {"Phi3ForCausalLM"};
             c["rope_parameters"] = {{"rope_type", "longrope"},
                                     {"short_factor", {1.0}},
                                     {"long_factor", {1.0}},
                                     {"original_max_position_embeddings", 64}};
         },
         {"longrope", "1 short and 1 long factors"}},
        {"gelu_pytorch_tanh on a llama",
         [](json& c) { c["hidden_act"] = "gelu_pytorch_tanh"; },
         {"gelu_pytorch_tanh", "LlamaForCausalLM", "silu"}},
        {"bidirectional gemma",
         [](json& c) {
             c["architectures"] = {"Gemma2ForCausalLM"};
             c["hidden_act"] = nullptr;
             c["use_bidirectional_attention"] = true;
         },
         {"use_bidirectional_attention"}},
        {"gemma layer type",
         [](json& c) {
             c["architectures"] = {"Gemma2ForCausalLM"};
             c["hidden_act"] = nullptr;
             c["layer_types"] = json::array();
             for (int i = 0; i < c["num_hidden_layers"].get<int>(); ++i)
                 c["layer_types"].push_back("chunked_attention");
         },
         {"layer_types[0]", "chunked_attention"}},
        {"llama3 without factors",
         [](json& c) {
             c["rope_parameters"] = {{"rope_type", "llama3"}};
         },
         {"llama3", "original_max_position_embeddings"}},
        {"gelu activation", [](json& c) { c["hidden_act"] = "gelu"; }, {"hidden_act", "gelu"}},
        {"mlp bias", [](json& c) { c["mlp_bias"] = true; }, {"mlp_bias"}},
        {"o_proj bias", [](json& c) { c["attention_bias"] = true; }, {"attention_bias", "o_proj"}},
        {"partial rotary with llama's interleaved rope",
         [](json& c) { c["partial_rotary_factor"] = 0.5; },
         {"partial_rotary_factor", "0.5"}},
        {"qwen sliding window",
         [](json& c) {
             c["architectures"] = {"Qwen2ForCausalLM"};
             c["use_sliding_window"] = true;
         },
         {"use_sliding_window"}},
    };
    for (const auto& k : cases) {
        json c = llama_config();
        k.edit(c);
        const std::string msg = refusal(c);
        EXPECT_FALSE(msg.empty()) << k.name << ": accepted";
        for (const char* part : k.message)
            EXPECT_NE(msg.find(part), std::string::npos) << k.name << ": " << msg;
    }
}

TEST(BadConfig, SupportedVariantsStillLoad) {
    json c = llama_config();
    c["hidden_act"] = "silu";
    c["rope_scaling"] = nullptr;
    EXPECT_EQ(refusal(c), "");
    c["rope_parameters"] = {{"rope_type", "llama3"},   {"rope_theta", 500000.0},
                            {"factor", 8.0},           {"low_freq_factor", 1.0},
                            {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
    const ModelConfig m = parse_hf_config(c.dump(), "cfg");
    EXPECT_EQ(m.rope_scaling.kind, RopeScaling::Kind::Llama3);
    EXPECT_EQ(m.rope_theta, 500000.0);
    // Llama-3.1-8B's figures: head 128 → 64 pairs; the fastest pairs are kept, the slowest
    // divided by 8, as llama.cpp's converter writes rope_freqs.weight.
    c["head_dim"] = 128;
    c["hidden_size"] = 512;
    const ModelConfig m8 = parse_hf_config(c.dump(), "cfg");
    const std::vector<float> f = llama3_rope_freq_factors(m8);
    ASSERT_EQ(f.size(), 64u);
    EXPECT_EQ(f.front(), 1.0f);
    EXPECT_EQ(f.back(), 8.0f);
    const std::vector<double> freqs = rope_frequencies(m8);
    EXPECT_NEAR(freqs.back() * 8.0, std::pow(500000.0, -126.0 / 128.0), 1e-18);
    // v4 linear scaling divides every frequency by the factor.
    c.erase("rope_parameters");
    c["rope_theta"] = 10000.0;
    c["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
    const ModelConfig lin = parse_hf_config(c.dump(), "cfg");
    EXPECT_EQ(lin.rope_scaling.kind, RopeScaling::Kind::Linear);
    EXPECT_NEAR(rope_frequencies(lin)[1] * 4.0, std::pow(10000.0, -2.0 / 128.0), 1e-15);
}

// llama-8m's reference GGUF with one key changed.
std::string gguf_refusal(const std::string& key, const GgufValue& value) {
    const GgufFile src = GgufFile::open(cli_testing::shared_path("models/llama-8m-Q4_K_M.gguf"));
    GgufWriter w;
    w.copy_from(src);
    w.add_kv(key, value);
    const std::vector<uint8_t> bytes = w.serialize();
    try {
        config_from_gguf(GgufFile::parse(bytes, "edited.gguf"));
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

// llama's interleaved rope over part of the head is not implemented (Phi-3's neox one is).
TEST(BadGgufConfig, PartialRotaryRefused) {
    const std::string msg = gguf_refusal("llama.rope.dimension_count", GgufValue::u32(32));
    EXPECT_NE(msg.find("llama.rope.dimension_count is 32"), std::string::npos) << msg;
    EXPECT_EQ(gguf_refusal("llama.rope.dimension_count", GgufValue::u32(64)), "");
}

TEST(BadGgufConfig, ScaledRopeTypeRefused) {
    const std::string msg = gguf_refusal("llama.rope.scaling.type", GgufValue::string("yarn"));
    EXPECT_NE(msg.find("rope.scaling.type is \"yarn\""), std::string::npos) << msg;
    EXPECT_EQ(gguf_refusal("llama.rope.scaling.type", GgufValue::string("none")), "");
}

}  // namespace
}  // namespace quantlens
