// The family registry (src/model/families): the nine families are registered once each, every
// tensor of every family round-trips HF → GGUF → HF with a known role and shape, the layer
// description each family sets, and refusals that list the registry.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/families/family.h"
#include "model/names.h"

using namespace quantlens;

namespace {

constexpr int kLayer = 3;
constexpr int kExpert = 2;

std::string with_expert(std::string pattern, int expert) {
    if (const size_t at = pattern.find("{E}"); at != std::string::npos)
        pattern.replace(at, 3, std::to_string(expert));
    return pattern;
}

// A config.json of `arch` with the fields every family needs, plus `extra` (JSON members).
std::string config_json(const std::string& arch, const std::string& extra = "") {
    return R"({"architectures":[")" + arch +
           R"("],"hidden_size":64,"num_hidden_layers":2,"num_attention_heads":4,)"
           R"("num_key_value_heads":2,"vocab_size":100,"intermediate_size":96,)"
           R"("moe_intermediate_size":32,"num_experts":4,"num_local_experts":4,)"
           R"("num_experts_per_tok":2,)"
           // Gated DeltaNet hybrids (Qwen3-Next, Qwen3.5)
           R"("linear_conv_kernel_dim":4,"linear_num_key_heads":2,"linear_num_value_heads":4,)"
           R"("linear_key_head_dim":16,"linear_value_head_dim":16)" +
           (extra.empty() ? "" : "," + extra) + "}";
}

// Gemma 4 needs its sliding window and its two ropes (the global layers' proportional one).
const char* const kGemma4Extras =
    R"("sliding_window":32,"rope_parameters":{"sliding_attention":{"rope_type":"default",)"
    R"("rope_theta":10000.0},"full_attention":{"rope_type":"proportional",)"
    R"("partial_rotary_factor":0.25,"rope_theta":1000000.0}})";

// DeepSeek-V3 and GLM-4.5 read their own MoE keys (and DeepSeek its MLA widths).
std::string family_config(const Family& f, const std::string& extra = "") {
    const std::string sigmoid_moe =
        R"("n_routed_experts":4,"n_shared_experts":1,"first_k_dense_replace":1,)"
        R"("n_group":2,"topk_group":1,"routed_scaling_factor":2.5,"scoring_func":"sigmoid")";
    if (f.id == Arch::DeepseekV3)
        return R"({"architectures":["DeepseekV3ForCausalLM"],"hidden_size":64,)"
               R"("num_hidden_layers":2,"num_attention_heads":4,"vocab_size":100,)"
               R"("intermediate_size":96,"moe_intermediate_size":32,"num_experts_per_tok":2,)"
               R"("q_lora_rank":48,"kv_lora_rank":32,"qk_rope_head_dim":8,)"
               R"("qk_nope_head_dim":16,"v_head_dim":12,)" +
               sigmoid_moe + (extra.empty() ? "" : "," + extra) + "}";
    if (f.id == Arch::Glm4Moe)
        return config_json(f.hf_architecture,
                           sigmoid_moe + R"(,"partial_rotary_factor":0.5,"use_qk_norm":true)" +
                               (extra.empty() ? "" : "," + extra));
    return config_json(f.hf_architecture, extra);
}

}  // namespace

TEST(Families, RegistryListsTheTenFamilies) {
    std::vector<std::string> hf;
    for (const Family* f : families()) hf.push_back(f->hf_architecture);
    EXPECT_EQ(
        hf, (std::vector<std::string>{
                "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
                "MixtralForCausalLM", "Qwen2MoeForCausalLM", "Gemma2ForCausalLM",
                "Gemma3ForCausalLM", "Phi3ForCausalLM", "Gemma4ForCausalLM", "Qwen3NextForCausalLM",
                "Qwen3_5ForCausalLM", "Qwen3_5MoeForCausalLM", "GptOssForCausalLM",
                "Qwen3MoeForCausalLM", "DeepseekV3ForCausalLM", "Glm4MoeForCausalLM"}));
    std::set<std::string> names, hfs, model_types;
    for (const Family* f : families()) {
        EXPECT_TRUE(names.insert(f->name).second) << f->name;
        EXPECT_TRUE(hfs.insert(f->hf_architecture).second) << f->hf_architecture;
        EXPECT_TRUE(model_types.insert(f->model_type).second) << f->model_type;
        EXPECT_EQ(&family_of(f->id), f);
        EXPECT_STREQ(arch_name(f->id), f->name.c_str());
        EXPECT_EQ(find_hf_family(f->hf_architecture, ""), f);
        EXPECT_EQ(find_hf_family("", f->model_type), f);
        EXPECT_TRUE(f->read_hf && f->read_gguf && f->write_gguf) << f->name;
    }
    EXPECT_EQ(registered_gguf_architectures(),
              "llama, qwen2, qwen3, qwen2moe, gemma2, gemma3, phi3, gemma4, qwen3next, qwen35, "
              "qwen35moe, gpt-oss, qwen3moe, deepseek2, glm4moe");
}

TEST(Families, EveryTensorRoundTrips) {
    for (const Family* f : families()) {
        SCOPED_TRACE(f->name);
        const ModelConfig c = parse_hf_config(
            family_config(*f, f->id == Arch::Gemma4 ? kGemma4Extras : ""), "cfg.json");
        for (const GlobalTensorName& g : f->globals) {
            const auto mapped = hf_to_gguf(g.hf, f->id);
            ASSERT_TRUE(mapped) << g.hf;
            EXPECT_EQ(mapped->gguf, g.gguf);
            EXPECT_EQ(gguf_to_hf(g.gguf, f->id), g.hf);
            EXPECT_NE(role_from_gguf_name(g.gguf), TensorRole::Other) << g.gguf;
        }
        std::set<std::string> gguf_names;
        for (const TensorName& t : f->layer_tensors) {
            // DeepSeek's kv_b_proj maps to attn_k_b, which the HF source splits into attn_k_b
            // and attn_v_b; exp_probs_b is the bias e_score_correction_bias only (both in
            // tests/analysis/test_deepseek_families.cpp).
            if (t.gguf == "attn_v_b" || t.gguf == "exp_probs_b") continue;
            if (t.bare || t.gguf.find('.') != std::string::npos) {
                // A bare HF parameter (no suffix on either side), or an HF name without suffix
                // whose GGUF name carries its own (Gemma 4's layer_scalar, router.scale).
                const std::string hf = "model.layers." + std::to_string(kLayer) + "." + t.hf;
                const auto mapped = hf_to_gguf(hf, f->id);
                ASSERT_TRUE(mapped) << hf;
                EXPECT_EQ(mapped->gguf, "blk.3." + t.gguf);
                EXPECT_EQ(gguf_to_hf(mapped->gguf, f->id), hf);
                EXPECT_TRUE(gguf_names.insert(mapped->gguf).second) << mapped->gguf;
                const TensorRole role = role_from_gguf_name(mapped->gguf);
                EXPECT_NE(role, TensorRole::Other) << mapped->gguf;
                if (t.bare)
                    EXPECT_FALSE(hf_to_gguf(hf + ".weight", f->id)) << hf;
                else
                    EXPECT_FALSE(expected_ne(role, c).empty()) << mapped->gguf;
                continue;
            }
            for (const char* suffix : {".weight", ".bias"}) {
                const std::string hf = "model.layers." + std::to_string(kLayer) + "." +
                                       with_expert(t.hf, kExpert) + suffix;
                // A tensor the converter splits maps to each of its parts.
                std::optional<HfName> mapped;
                for (HfName& m : hf_to_gguf_all(hf, f->id))
                    if (m.gguf == "blk.3." + t.gguf + suffix) mapped = m;
                ASSERT_TRUE(mapped) << hf;
                EXPECT_EQ(mapped->layer, kLayer);
                const bool stacked = t.hf.find("{E}") != std::string::npos;
                EXPECT_EQ(mapped->expert, stacked ? kExpert : -1) << hf;
                EXPECT_EQ(mapped->gguf, "blk.3." + t.gguf + suffix);
                EXPECT_EQ(with_expert(gguf_to_hf(mapped->gguf, f->id), kExpert), hf);
            }
            const std::string gguf = "blk.3." + t.gguf + ".weight";
            EXPECT_TRUE(gguf_names.insert(gguf).second) << gguf << " appears twice";
            const TensorRole role = role_from_gguf_name(gguf);
            EXPECT_NE(role, TensorRole::Other) << gguf;
            EXPECT_FALSE(expected_ne(role, c).empty()) << gguf;
            EXPECT_EQ(layer_from_gguf_name(gguf), kLayer);
        }
        // A tensor of another family is not one of this family's.
        EXPECT_FALSE(hf_to_gguf("model.layers.0.nonexistent_proj.weight", f->id));
    }
}

TEST(Families, LayerDescription) {
    const ModelConfig llama = parse_hf_config(config_json("LlamaForCausalLM"), "cfg.json");
    EXPECT_EQ(llama.rope, RopeStyle::Normal);
    EXPECT_FALSE(llama.qkv_bias || llama.qk_norm || llama.is_moe());
    const ModelConfig qwen3 = parse_hf_config(config_json("Qwen3ForCausalLM"), "cfg.json");
    EXPECT_EQ(qwen3.rope, RopeStyle::Neox);
    EXPECT_TRUE(qwen3.qk_norm);
    const ModelConfig mixtral = parse_hf_config(config_json("MixtralForCausalLM"), "cfg.json");
    EXPECT_EQ(mixtral.rope, RopeStyle::Normal);
    EXPECT_TRUE(mixtral.is_moe() && mixtral.moe_renormalize);
    EXPECT_EQ(mixtral.shared_expert, SharedExpert::None);
    const ModelConfig moe = parse_hf_config(
        config_json("Qwen2MoeForCausalLM", R"("shared_expert_intermediate_size":48)"), "cfg.json");
    EXPECT_EQ(moe.rope, RopeStyle::Neox);
    EXPECT_TRUE(moe.qkv_bias);
    EXPECT_FALSE(moe.moe_renormalize);
    EXPECT_EQ(moe.shared_expert, SharedExpert::SigmoidGated);
    EXPECT_EQ(moe.ffn, 32);
    const ModelConfig moe_norm =
        parse_hf_config(config_json("Qwen2MoeForCausalLM", R"("norm_topk_prob":true)"), "cfg.json");
    EXPECT_TRUE(moe_norm.moe_renormalize);
    EXPECT_EQ(moe_norm.shared_expert, SharedExpert::None);
}

TEST(Families, UnknownArchitectureListsTheRegistry) {
    std::string message;
    try {
        parse_hf_config(config_json("GPT2LMHeadModel"), "cfg.json");
    } catch (const Error& e) {
        message = e.what();
    }
    EXPECT_NE(message.find("unsupported architecture 'GPT2LMHeadModel'"), std::string::npos);
    EXPECT_NE(message.find(registered_hf_architectures()), std::string::npos) << message;
    for (const Family* f : families())
        EXPECT_NE(message.find(f->hf_architecture), std::string::npos) << message;
}

// What a real config of each family carries beyond config_json's fields, so that the GGUF
// writer accepts it (Gemma 2's converter needs the soft-capping values, Phi-3's the original
// context length).
std::string family_extras(const Family& f) {
    if (f.id == Arch::Gemma2)
        return R"("attn_logit_softcapping":50.0,"final_logit_softcapping":30.0,)"
               R"("sliding_window":32,"tie_word_embeddings":true)";
    if (f.id == Arch::Phi3) return R"("original_max_position_embeddings":64)";
    if (f.id == Arch::Gemma4) return kGemma4Extras;
    if (f.id == Arch::Qwen3Moe) return R"("norm_topk_prob":true)";  // as llama.cpp computes it
    return R"("shared_expert_intermediate_size":48)";
}

TEST(Families, GgufKeys) {
    for (const Family* f : families()) {
        SCOPED_TRACE(f->name);
        const ModelConfig c =
            parse_hf_config(f->id == Arch::DeepseekV3 || f->id == Arch::Glm4Moe
                                ? family_config(*f)
                                : config_json(f->hf_architecture, family_extras(*f)),
                            "cfg.json");
        GgufKeys keys;
        f->write_gguf(c, keys);
        ASSERT_FALSE(keys.empty());
        // The converter's order: TextModel's block_count first, Gemma 2 and Phi-3 their own.
        EXPECT_EQ(keys.front().first,
                  f->gguf_arch + (f->id == Arch::Gemma2 || f->id == Arch::Phi3 ? ".context_length"
                                                                               : ".block_count"));
        std::set<std::string> names;
        for (const auto& [key, value] : keys) {
            EXPECT_EQ(key.rfind(f->gguf_arch + ".", 0), 0u) << key;
            EXPECT_TRUE(names.insert(key).second) << key << " written twice";
        }
        EXPECT_EQ(names.count(f->gguf_arch + ".expert_count"), c.is_moe() ? 1u : 0u);
        // llama.cpp's "llama" graph needs the vocabulary and rope sizes as keys, Phi-3's the
        // rotated channels.
        EXPECT_EQ(names.count(f->gguf_arch + ".rope.dimension_count"),
                  f->gguf_arch == "llama" || f->gguf_arch == "phi3" || f->gguf_arch == "gemma4" ||
                          f->gguf_arch == "deepseek2" || f->gguf_arch == "glm4moe" || c.is_hybrid()
                      ? 1u
                      : 0u);
    }
    const ModelConfig moe = parse_hf_config(
        config_json("Qwen2MoeForCausalLM", R"("shared_expert_intermediate_size":48)"), "cfg.json");
    GgufKeys keys;
    family_of(Arch::Qwen2Moe).write_gguf(moe, keys);
    std::vector<std::string> names;
    for (const auto& kv : keys) names.push_back(kv.first);
    const std::vector<std::string> tail(names.end() - 6, names.end());
    EXPECT_EQ(tail, (std::vector<std::string>{"qwen2moe.expert_count", "qwen2moe.expert_used_count",
                                              "qwen2moe.expert_feed_forward_length",
                                              "qwen2moe.expert_shared_feed_forward_length",
                                              "qwen2moe.attention.key_length",
                                              "qwen2moe.attention.value_length"}));
}

TEST(Families, LongropePicksItsFactorsByContext) {
    // Phi-3-style longrope over 18 of 24 channels: short factors up to the original context
    // (64 tokens), long ones beyond, attention factor sqrt(1 + ln(1024/64) / ln 64).
    const ModelConfig c = parse_hf_config(
        R"({"architectures":["Phi3ForCausalLM"],"hidden_size":96,"num_hidden_layers":2,)"
        R"("num_attention_heads":4,"num_key_value_heads":2,"vocab_size":100,)"
        R"("intermediate_size":96,"max_position_embeddings":1024,)"
        R"("rope_parameters":{"rope_type":"longrope","rope_theta":10000.0,)"
        R"("partial_rotary_factor":0.75,"original_max_position_embeddings":64,)"
        R"("short_factor":[1,1,1,1,1,1,1,1,1.5],"long_factor":[1,2,3,4,5,6,7,8,9]}})",
        "cfg.json");
    EXPECT_EQ(c.rotary_dims(), 18);
    EXPECT_TRUE(c.fused_qkv && c.fused_gate_up && c.rope == RopeStyle::Neox);
    EXPECT_NEAR(rope_attention_factor(c), std::sqrt(1.0 + std::log(16.0) / std::log(64.0)), 1e-12);
    const double base8 = std::pow(10000.0, -16.0 / 18.0);
    EXPECT_NEAR(rope_frequencies(c, 64)[8], base8 / 1.5, 1e-15);
    EXPECT_NEAR(rope_frequencies(c, 65)[8], base8 / 9.0, 1e-15);
    EXPECT_EQ(rope_frequencies(c, 65).size(), 9u);
}

TEST(Families, LinearRopeScalingIsWrittenAsTheConverterDoes) {
    // TextModel.set_gguf_parameters: rope.scaling.type and .factor after head_count_kv.
    const ModelConfig c = parse_hf_config(
        config_json("LlamaForCausalLM", R"("rope_scaling":{"type":"linear","factor":4.0})"),
        "cfg.json");
    GgufKeys keys;
    family_of(Arch::Llama).write_gguf(c, keys);
    std::vector<std::string> names;
    for (const auto& kv : keys) names.push_back(kv.first);
    const auto at = std::find(names.begin(), names.end(), "llama.rope.scaling.type");
    ASSERT_NE(at, names.end());
    EXPECT_EQ(*(at - 1), "llama.attention.head_count_kv");
    EXPECT_EQ(*(at + 1), "llama.rope.scaling.factor");
    EXPECT_EQ(*(at + 2), "llama.rope.freq_base");
    EXPECT_EQ(keys[static_cast<size_t>(at - names.begin())].second.as_string(), "linear");
    EXPECT_EQ(keys[static_cast<size_t>(at - names.begin()) + 1].second.as_float(), 4.0);
    // Partial rotary on a neox family has no key in its converter: refused.
    const ModelConfig q = parse_hf_config(
        config_json("Qwen3ForCausalLM", R"("partial_rotary_factor":0.5)"), "cfg.json");
    GgufKeys qk;
    EXPECT_THROW(family_of(Arch::Qwen3).write_gguf(q, qk), Error);
}
