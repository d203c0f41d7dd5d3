// Architecture hyper-parameters, parsed from a Hugging Face config.json or from GGUF
// metadata (llama.cpp's `ARCH.*` keys). One struct for every source so the engine never
// asks where a model came from.
//
// config.json fields read: architectures[0], model_type, hidden_size, intermediate_size,
// num_hidden_layers, num_attention_heads, num_key_value_heads, head_dim, vocab_size,
// rms_norm_eps, rope_theta | rope_parameters.rope_theta, tie_word_embeddings,
// max_position_embeddings, torch_dtype | dtype, bos/eos_token_id,
// num_local_experts | num_experts, num_experts_per_tok, moe_intermediate_size,
// shared_expert_intermediate_size, attention_bias, use_qkv_bias (Qwen2 has biases).
#pragma once

#include <cstdint>
#include <string>

namespace quantlens {

enum class Arch { Llama, Mistral, Qwen2, Qwen3, Mixtral, Qwen2Moe };

struct ModelConfig {
    Arch arch = Arch::Llama;
    std::string hf_architecture;  // "LlamaForCausalLM"
    std::string gguf_arch;        // "llama", "qwen2", "qwen3", "qwen2moe" (Mixtral is "llama")
    int64_t n_layers = 0;
    int64_t hidden = 0;
    int64_t n_heads = 0;
    int64_t n_kv_heads = 0;
    int64_t head_dim = 0;
    int64_t ffn = 0;  // dense FFN width, or per-expert width for MoE
    int64_t vocab = 0;
    int64_t max_positions = 0;
    double rms_eps = 1e-6;
    double rope_theta = 10000.0;
    bool tie_embeddings = false;
    bool qkv_bias = false;  // Qwen2
    bool qk_norm = false;   // Qwen3
    int64_t n_experts = 0;  // 0 = dense
    int64_t n_experts_used = 0;
    int64_t shared_expert_ffn = 0;  // Qwen2-MoE
    std::string torch_dtype;        // "bfloat16", "float16", "float32"
    int64_t bos_token_id = -1;
    int64_t eos_token_id = -1;

    bool is_moe() const { return n_experts > 0; }
    // llama.cpp rope style: GGUF llama stores q/k rows permuted and uses normal (interleaved
    // pairs) RoPE; qwen2/qwen3/qwen2moe use neox (half-split) RoPE on unpermuted weights.
    bool rope_neox() const {
        return arch == Arch::Qwen2 || arch == Arch::Qwen3 || arch == Arch::Qwen2Moe;
    }
};

// Parses config.json text; `path` names the file in errors. Throws Error on unknown
// architectures, missing or inconsistent fields.
ModelConfig parse_hf_config(const std::string& json_text, const std::string& path);
ModelConfig load_hf_config(const std::string& path);
// From llama.cpp GGUF metadata (general.architecture, ARCH.block_count, ...). A "llama"
// file with ARCH.expert_count > 0 is Mixtral; tie_embeddings is true when the file has no
// output.weight tensor. Throws Error naming the file and the missing key.
class GgufFile;
ModelConfig config_from_gguf(const GgufFile& gguf);

const char* arch_name(Arch arch);

}  // namespace quantlens
