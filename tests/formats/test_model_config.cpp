// config.json parsing for every supported architecture and config style, and the same
// hyper-parameters read back from llama.cpp GGUF metadata.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "core/error.h"
#include "formats/gguf.h"
#include "formats/model_config.h"
#include "support/error_of.h"
#include "support/test_data.h"

using namespace quantlens;

namespace {

using quantlens::test_support::shared_path;

std::string config_error(const std::string& text) {
    return test_support::error_of([&] { parse_hf_config(text, "cfg.json"); });
}

}  // namespace

TEST(ModelConfig, LlamaNewStyle) {
    ModelConfig c = load_hf_config(shared_path("models/llama-8m/config.json"));
    EXPECT_EQ(c.arch, Arch::Llama);
    EXPECT_EQ(c.gguf_arch, "llama");
    EXPECT_EQ(c.n_layers, 8);
    EXPECT_EQ(c.hidden, 256);
    EXPECT_EQ(c.n_heads, 4);
    EXPECT_EQ(c.n_kv_heads, 2);
    EXPECT_EQ(c.head_dim, 64);
    EXPECT_EQ(c.ffn, 768);
    EXPECT_EQ(c.vocab, 4096);
    EXPECT_EQ(c.rope_theta, 10000.0);
    EXPECT_EQ(c.rms_eps, 1e-5);
    EXPECT_EQ(c.torch_dtype, "bfloat16");
    EXPECT_FALSE(c.tie_embeddings);
    EXPECT_FALSE(c.qkv_bias);
    EXPECT_EQ(c.bos_token_id, 0);
    EXPECT_EQ(c.eos_token_id, 1);
    EXPECT_FALSE(c.rope_neox());
}

TEST(ModelConfig, Qwen2OldStyle) {
    ModelConfig c = load_hf_config(shared_path("models/tiny-qwen2/config.json"));
    EXPECT_EQ(c.arch, Arch::Qwen2);
    EXPECT_EQ(c.gguf_arch, "qwen2");
    EXPECT_EQ(c.rope_theta, 1000000.0);
    EXPECT_EQ(c.torch_dtype, "bfloat16");
    EXPECT_EQ(c.head_dim, 32);
    EXPECT_EQ(c.ffn, 352);
    EXPECT_TRUE(c.tie_embeddings);
    EXPECT_TRUE(c.qkv_bias);
    EXPECT_TRUE(c.rope_neox());
}

TEST(ModelConfig, Mixtral) {
    ModelConfig c = load_hf_config(shared_path("models/tiny-moe/config.json"));
    EXPECT_EQ(c.arch, Arch::Mixtral);
    EXPECT_EQ(c.gguf_arch, "llama");
    EXPECT_EQ(c.n_experts, 4);
    EXPECT_EQ(c.n_experts_used, 2);
    EXPECT_EQ(c.ffn, 512);
    EXPECT_EQ(c.head_dim, 64);  // "head_dim": null → hidden / heads
    EXPECT_EQ(c.rope_theta, 1000000.0);
}

TEST(ModelConfig, OtherArchitectures) {
    const std::string base =
        R"("hidden_size":64,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,)"
        R"("vocab_size":100,"intermediate_size":128,"rms_norm_eps":1e-6)";
    ModelConfig m =
        parse_hf_config(R"({"architectures":["MistralForCausalLM"],)" + base + "}", "m");
    EXPECT_EQ(m.arch, Arch::Mistral);
    EXPECT_EQ(m.gguf_arch, "llama");
    ModelConfig q3 = parse_hf_config(
        R"({"architectures":["Qwen3ForCausalLM"],"head_dim":32,"torch_dtype":"float16",)" + base +
            "}",
        "q3");
    EXPECT_EQ(q3.arch, Arch::Qwen3);
    EXPECT_TRUE(q3.qk_norm);
    EXPECT_EQ(q3.head_dim, 32);
    EXPECT_EQ(q3.torch_dtype, "float16");
    ModelConfig moe = parse_hf_config(
        R"({"architectures":["Qwen2MoeForCausalLM"],"num_experts":8,"num_experts_per_tok":2,)"
        R"("moe_intermediate_size":32,"shared_expert_intermediate_size":96,"eos_token_id":[5,6],)" +
            base + "}",
        "moe");
    EXPECT_EQ(moe.arch, Arch::Qwen2Moe);
    EXPECT_EQ(moe.gguf_arch, "qwen2moe");
    EXPECT_EQ(moe.ffn, 32);
    EXPECT_EQ(moe.shared_expert_ffn, 96);
    EXPECT_EQ(moe.n_experts, 8);
    EXPECT_EQ(moe.eos_token_id, 5);
}

TEST(ModelConfig, Errors) {
    EXPECT_NE(config_error("{").find("cfg.json: not valid JSON"), std::string::npos);
    EXPECT_NE(config_error(R"({"architectures":["GPT2LMHeadModel"]})")
                  .find("unsupported architecture 'GPT2LMHeadModel'"),
              std::string::npos);
    EXPECT_NE(config_error(R"({"architectures":["LlamaForCausalLM"]})").find("hidden_size"),
              std::string::npos);
    EXPECT_NE(config_error(R"({"architectures":["LlamaForCausalLM"],"hidden_size":"big"})")
                  .find("expected an integer"),
              std::string::npos);
    EXPECT_NE(
        config_error(
            R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,"num_hidden_layers":2,)"
            R"("num_attention_heads":4,"num_key_value_heads":3,"vocab_size":10,"intermediate_size":8})")
            .find("not a multiple of 3"),
        std::string::npos);
}

TEST(ModelConfig, FromGgufMatchesHf) {
    GgufFile g = GgufFile::open(shared_path("models/llama-8m-Q4_K_M.gguf"));
    ModelConfig a = config_from_gguf(g);
    ModelConfig b = load_hf_config(shared_path("models/llama-8m/config.json"));
    EXPECT_EQ(a.arch, Arch::Llama);
    EXPECT_EQ(a.n_layers, b.n_layers);
    EXPECT_EQ(a.hidden, b.hidden);
    EXPECT_EQ(a.n_heads, b.n_heads);
    EXPECT_EQ(a.n_kv_heads, b.n_kv_heads);
    EXPECT_EQ(a.head_dim, b.head_dim);
    EXPECT_EQ(a.ffn, b.ffn);
    EXPECT_EQ(a.vocab, b.vocab);
    EXPECT_EQ(a.max_positions, b.max_positions);
    EXPECT_FLOAT_EQ(a.rms_eps, b.rms_eps);
    EXPECT_EQ(a.rope_theta, b.rope_theta);
    EXPECT_EQ(a.tie_embeddings, b.tie_embeddings);
    EXPECT_EQ(a.bos_token_id, 0);
    EXPECT_EQ(a.eos_token_id, 1);
}

TEST(ModelConfig, FromGgufMixtral) {
    GgufFile g = GgufFile::open(shared_path("models/tiny-moe-Q4_K_M.gguf"));
    ModelConfig c = config_from_gguf(g);
    EXPECT_EQ(c.arch, Arch::Mixtral);
    EXPECT_EQ(c.hf_architecture, "MixtralForCausalLM");
    EXPECT_EQ(c.n_experts, 4);
    EXPECT_EQ(c.n_experts_used, 2);
    EXPECT_EQ(c.ffn, 512);
    EXPECT_EQ(c.rope_theta, 1000000.0);
}
