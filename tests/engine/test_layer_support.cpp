// check_layer_supported: the CPU engine runs every layer the families describe; the CUDA
// engine runs the dense families' layers (Gemma 2/3, Phi-3) and the MoE ones (gpt-oss, GLM-4.5,
// DeepSeek-V3's MLA), and refuses Gemma 4 and the Gated DeltaNet hybrids by name
// (tests/analysis/test_gemma4.cpp, test_deltanet.cpp).
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "engine/engine.h"

namespace quantlens {
namespace {

std::string cuda_refusal(const ModelConfig& c) {
    try {
        check_layer_supported(c, "CUDA engine", EngineKind::Cuda);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

ModelConfig config_of(const std::string& arch, const std::string& extra = "") {
    return parse_hf_config(R"({"architectures":[")" + arch +
                               R"("],"hidden_size":64,"num_hidden_layers":2,)"
                               R"("num_attention_heads":4,"num_key_value_heads":2,)"
                               R"("vocab_size":100,"intermediate_size":96)" +
                               (extra.empty() ? "" : "," + extra) + "}",
                           "cfg.json");
}

TEST(LayerSupport, CpuRunsEveryFamily) {
    for (const char* arch : {"Gemma2ForCausalLM", "Gemma3ForCausalLM", "Phi3ForCausalLM"})
        EXPECT_NO_THROW(check_layer_supported(config_of(arch), "cpu", EngineKind::Cpu)) << arch;
}

TEST(LayerSupport, CudaRunsTheDenseFamilies) {
    for (const char* arch :
         {"LlamaForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM", "Phi3ForCausalLM"})
        EXPECT_EQ(cuda_refusal(config_of(arch)), "") << arch;
    EXPECT_EQ(cuda_refusal(config_of("LlamaForCausalLM",
                                     R"("rope_scaling":{"type":"linear","factor":2.0})")),
              "");  // linear scaling is only other frequencies, which CUDA takes as tables
    EXPECT_EQ(cuda_refusal(config_of("Qwen3ForCausalLM", R"("partial_rotary_factor":0.5)")), "");
    ModelConfig c = config_of("LlamaForCausalLM");
    c.attn_softcap = 50.0;
    EXPECT_EQ(cuda_refusal(c), "");
    c = config_of("Qwen3MoeForCausalLM",
                  R"("num_experts":4,"num_experts_per_tok":2,"moe_intermediate_size":32,)"
                  R"("norm_topk_prob":false)");
    ASSERT_FALSE(c.moe_renormalize);
    EXPECT_EQ(cuda_refusal(c), "");
    // gpt-oss: sinks, clamped SwiGLU, biases and yarn (engine/cuda: the softmax kernel's sink,
    // GateAct::ClampedSwiGLU, the bias slots, yarn tables).
    c = config_of("GptOssForCausalLM", R"("num_local_experts":4,"num_experts_per_tok":2)");
    ASSERT_TRUE(c.attn_sinks && c.swiglu_limit > 0);
    ASSERT_EQ(c.rope_scaling.kind, RopeScaling::Kind::Yarn);
    EXPECT_EQ(cuda_refusal(c), "");
    // GLM-4.5: grouped sigmoid routing, an ungated shared expert, a leading dense layer.
    c = config_of("Glm4MoeForCausalLM",
                  R"("moe_intermediate_size":32,"num_experts_per_tok":2,"n_routed_experts":8,)"
                  R"("n_shared_experts":1,"first_k_dense_replace":1,"n_group":2,"topk_group":1)");
    ASSERT_TRUE(c.moe_sigmoid && c.shared_expert == SharedExpert::Ungated && c.n_dense_layers == 1);
    EXPECT_EQ(cuda_refusal(c), "");
    // DeepSeek-V3's multi-head latent attention (engine/cuda: the absorbed form's kernels).
    c.mla = true;
    EXPECT_EQ(cuda_refusal(c), "");
}

}  // namespace
}  // namespace quantlens
