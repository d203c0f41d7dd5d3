// check_layer_supported: the CPU engine runs every layer the families describe; the CUDA
// engine refuses, by name, each feature it lacks (so `--gpu` on Gemma or Phi-3 says why
// instead of computing something else).
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

TEST(LayerSupport, CudaNamesWhatItLacks) {
    EXPECT_EQ(cuda_refusal(config_of("LlamaForCausalLM")), "");
    EXPECT_EQ(cuda_refusal(config_of("LlamaForCausalLM",
                                     R"("rope_scaling":{"type":"linear","factor":2.0})")),
              "");  // linear scaling is only other frequencies, which CUDA takes as tables
    const std::string phi3 = cuda_refusal(config_of("Phi3ForCausalLM"));
    EXPECT_NE(phi3.find("CUDA engine: phi3 uses a fused attn_qkv projection"), std::string::npos)
        << phi3;
    const std::string gemma2 = cuda_refusal(config_of("Gemma2ForCausalLM"));
    EXPECT_NE(gemma2.find("the GeGLU (tanh GELU) MLP"), std::string::npos) << gemma2;
    ModelConfig c = config_of("LlamaForCausalLM");
    c.attn_softcap = 50.0;
    EXPECT_NE(cuda_refusal(c).find("attention logit soft-capping"), std::string::npos);
    c = config_of("Qwen3ForCausalLM", R"("partial_rotary_factor":0.5)");
    EXPECT_NE(cuda_refusal(c).find("partial rotary"), std::string::npos);
}

}  // namespace
}  // namespace quantlens
