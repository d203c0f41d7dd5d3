// Architecture hyper-parameters, parsed from a Hugging Face config.json or from GGUF
// metadata (llama.cpp's `ARCH.*` keys). One struct for every source so the engine never
// asks where a model came from.
//
// config.json fields read: architectures[0], model_type, hidden_size, intermediate_size,
// num_hidden_layers, num_attention_heads, num_key_value_heads, head_dim, vocab_size,
// rms_norm_eps, rope_theta | rope_parameters.rope_theta, tie_word_embeddings,
// max_position_embeddings, torch_dtype | dtype, bos/eos_token_id,
// num_local_experts | num_experts, num_experts_per_tok, moe_intermediate_size,
// shared_expert_intermediate_size, attention_bias, use_qkv_bias (Qwen2 has biases),
// rope_scaling (v4) | rope_parameters (v5), hidden_act | hidden_activation, mlp_bias,
// partial_rotary_factor, sliding_window / use_sliding_window.
//
// Promise: a config the engine would compute wrongly is refused, naming the key and value:
// a rope type other than default/llama3, an activation other than SiLU, MLP biases, an
// output-projection bias, partial rotary dimensions, per-layer-type rope dictionaries; from
// GGUF, a rope.dimension_count other than the head size or a rope.scaling.type other than
// none. A sliding window is recorded and enforced by the engine when a sequence is longer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace quantlens {

enum class Arch { Llama, Mistral, Qwen2, Qwen3, Mixtral, Qwen2Moe };

// How a model rescales its rotary frequencies beyond the base θ^(-2i/D).
struct RopeScaling {
    enum class Kind { None, Llama3 };
    Kind kind = Kind::None;
    // Llama 3.1/3.2 (rope_type "llama3"): wavelengths longer than
    // original_max_positions / low_freq_factor are divided by `factor`, those shorter than
    // original_max_positions / high_freq_factor are kept, and the band between is blended.
    double factor = 1.0;
    double low_freq_factor = 1.0;
    double high_freq_factor = 4.0;
    int64_t original_max_positions = 0;
};

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
    RopeScaling rope_scaling;
    // llama.cpp's per-pair frequency divisors (GGUF tensor rope_freqs.weight, D/2 values),
    // which is how a GGUF carries llama3 scaling; empty when the file has none.
    std::vector<float> rope_freq_factors;
    int64_t sliding_window = 0;  // attention window in tokens; 0 = full causal attention
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

// Rotary angular frequency of each of the D/2 dimension pairs (angle = position × value),
// with the model's scaling applied: the one definition the CPU and GPU engines share.
std::vector<double> rope_frequencies(const ModelConfig& config);
// Throws Error when a sequence of T tokens would need attention the engine does not
// implement (beyond the model's sliding window).
void check_sequence_length(const ModelConfig& config, int64_t T);
// llama.cpp's rope_freqs.weight for a llama3-scaled config (the divisor of each pair's base
// frequency, as its converter writes it); empty when the config has no such scaling.
std::vector<float> llama3_rope_freq_factors(const ModelConfig& config);

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
