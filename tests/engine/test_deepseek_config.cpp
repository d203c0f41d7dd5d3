// DeepSeek-V3 and GLM-4.5 configs: what is read (MLA widths, yarn, the routing keys, dense
// layers, the shared expert) and what is refused by name, on the CPU and the GPU engine.
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "engine/engine.h"
#include "formats/model_config.h"
#include "support/error_of.h"

using namespace quantlens;

namespace {

std::string deepseek(const std::string& extra = "") {
    return R"({"architectures":["DeepseekV3ForCausalLM"],"hidden_size":64,"num_hidden_layers":3,)"
           R"("num_attention_heads":4,"vocab_size":100,"intermediate_size":128,)"
           R"("moe_intermediate_size":32,"num_experts_per_tok":2,"n_routed_experts":8,)"
           R"("n_shared_experts":1,"first_k_dense_replace":1,"n_group":2,"topk_group":1,)"
           R"("routed_scaling_factor":2.5,"q_lora_rank":48,"kv_lora_rank":32,)"
           R"("qk_rope_head_dim":8,"qk_nope_head_dim":16,"v_head_dim":12,)"
           R"("max_position_embeddings":1024,"rope_parameters":{"rope_type":"yarn",)"
           R"("rope_theta":10000.0,"factor":4.0,"original_max_position_embeddings":256,)"
           R"("mscale":0.707,"mscale_all_dim":0.707})" +
           (extra.empty() ? "" : "," + extra) + "}";
}

std::string refusal(const std::string& json) {
    return test_support::error_of([&] { parse_hf_config(json, "config.json"); });
}

}  // namespace

TEST(DeepseekConfig, ReadsMlaYarnAndRouting) {
    const ModelConfig c = parse_hf_config(deepseek(), "config.json");
    EXPECT_EQ(c.arch, Arch::DeepseekV3);
    EXPECT_EQ(c.gguf_arch, "deepseek2");
    EXPECT_TRUE(c.mla && c.moe_sigmoid && c.moe_renormalize);
    EXPECT_EQ(c.head_dim, 8);
    EXPECT_EQ(c.qk_nope_dim, 16);
    EXPECT_EQ(c.v_head_dim, 12);
    EXPECT_EQ(c.q_lora_rank, 48);
    EXPECT_EQ(c.kv_lora_rank, 32);
    EXPECT_EQ(c.n_kv_heads, 4);
    EXPECT_EQ(c.rope, RopeStyle::Normal);
    EXPECT_EQ(c.rope_scaling.kind, RopeScaling::Kind::Yarn);
    EXPECT_DOUBLE_EQ(c.rope_scaling.attention_factor, 1.0);
    EXPECT_EQ(c.n_dense_layers, 1);
    EXPECT_EQ(c.dense_ffn, 128);
    EXPECT_EQ(c.ffn, 32);
    EXPECT_EQ(c.shared_expert, SharedExpert::Ungated);
    EXPECT_EQ(c.shared_expert_ffn, 32);
    EXPECT_EQ(c.n_expert_groups, 2);
    EXPECT_EQ(c.n_expert_groups_used, 1);
    EXPECT_DOUBLE_EQ(c.moe_weights_scale, 2.5);
    EXPECT_FALSE(c.is_moe_layer(0));
    EXPECT_TRUE(c.is_moe_layer(1));
}

TEST(DeepseekConfig, RefusesWhatItDoesNotImplement) {
    EXPECT_NE(refusal(deepseek(R"("q_lora_rank":null)")).find("q_lora_rank"), std::string::npos);
    EXPECT_NE(refusal(deepseek(R"("rope_interleave":false)")).find("rope_interleave"),
              std::string::npos);
    EXPECT_NE(refusal(deepseek(R"("scoring_func":"softmax")")).find("scoring_func"),
              std::string::npos);
    EXPECT_NE(refusal(deepseek(R"("topk_method":"greedy")")).find("topk_method"),
              std::string::npos);
    EXPECT_NE(refusal(deepseek(R"("attention_bias":true)")).find("attention_bias"),
              std::string::npos);
    EXPECT_NE(refusal(deepseek(R"("num_key_value_heads":2)")).find("num_key_value_heads"),
              std::string::npos);
    EXPECT_NE(refusal(deepseek(R"("n_group":3)")).find("groups"), std::string::npos);
    EXPECT_NE(refusal(deepseek(R"("moe_layer_freq":2)")).find("moe_layer_freq"), std::string::npos);
    // transformers' yarn factor would be max_position_embeddings / original (2048 / 256 = 8)
    EXPECT_NE(refusal(deepseek(R"("max_position_embeddings":2048)")).find("factor"),
              std::string::npos);
}

TEST(DeepseekConfig, BothEnginesRunIt) {
    const ModelConfig c = parse_hf_config(deepseek(), "config.json");
    ASSERT_TRUE(c.mla);
    EXPECT_NO_THROW(check_layer_supported(c, "m", EngineKind::Cpu));
    EXPECT_NO_THROW(check_layer_supported(c, "m", EngineKind::Cuda));
    for (EngineKind kind : {EngineKind::Cpu, EngineKind::Cuda}) {  // llama.cpp's numerics: no
        try {
            check_layer_supported(c, "m", kind, /*ggml_numerics=*/true);
            ADD_FAILURE() << "MLA accepted with llama.cpp's numerics";
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("not modelled for multi-head latent attention"),
                      std::string::npos);
        }
    }
    const ModelConfig glm = parse_hf_config(
        R"({"architectures":["Glm4MoeForCausalLM"],"hidden_size":64,"num_hidden_layers":2,)"
        R"("num_attention_heads":4,"num_key_value_heads":2,"head_dim":32,"vocab_size":100,)"
        R"("intermediate_size":128,"moe_intermediate_size":32,"num_experts_per_tok":2,)"
        R"("n_routed_experts":8,"n_shared_experts":1,"first_k_dense_replace":1,)"
        R"("partial_rotary_factor":0.5,"use_qk_norm":true,"attention_bias":true})",
        "config.json");
    EXPECT_TRUE(glm.qkv_bias && glm.qk_norm && glm.ffn_norm_post_attention);
    EXPECT_EQ(glm.rope, RopeStyle::Neox);
    EXPECT_EQ(glm.rotary_dims(), 16);
    EXPECT_NO_THROW(check_layer_supported(glm, "m", EngineKind::Cpu));
    EXPECT_NO_THROW(check_layer_supported(glm, "m", EngineKind::Cuda));  // no MLA
}
