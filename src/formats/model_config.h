// Architecture hyper-parameters, parsed from a Hugging Face config.json or from GGUF
// metadata (llama.cpp's `ARCH.*` keys). One struct for every source so the engine never
// asks where a model came from.
//
// Which family a model is, and what that family reads beyond the shared fields, is decided
// by the family registry (src/model/families): parse_hf_config() and config_from_gguf() are
// defined there (library ql_model). This file keeps the shared part every family uses:
// read_hf_shared_fields() and read_gguf_shared_fields() below.
//
// Shared config.json fields: architectures[0], model_type, hidden_size, num_hidden_layers,
// num_attention_heads, num_key_value_heads, head_dim, vocab_size, rms_norm_eps,
// rope_theta | rope_parameters.rope_theta, rope_local_base_freq, tie_word_embeddings,
// max_position_embeddings, torch_dtype | dtype, bos/eos_token_id, rope_scaling (v4) |
// rope_parameters (v5), hidden_activation | hidden_act, mlp_bias, partial_rotary_factor.
// Families read the rest (intermediate_size, experts, attention_bias, use_qkv_bias,
// sliding_window, layer_types, soft-capping, query_pre_attn_scalar, ...).
//
// Rope: v4 `rope_theta` + `rope_scaling` ("type" or "rope_type") and v5 `rope_parameters`,
// whose per-layer-type form ({"full_attention": {...}, "sliding_attention": {...}}) gives
// the global layers' rope and the sliding layers' own θ (v4 Gemma 3: rope_local_base_freq).
// Types: default, linear (θ^(-2i/d) / factor), llama3, longrope (short/long factors chosen by
// whether the sequence is longer than original_max_position_embeddings, and the attention
// factor multiplying cos/sin, as transformers and llama.cpp do), yarn (see
// RopeScaling: gpt-oss's, and DeepSeek's mscale/mscale_all_dim for the MLA families only);
// partial_rotary_factor (top level or in the rope object) rotates the first head_dim·factor
// channels only.
//
// Promise: a config the engine would compute wrongly is refused, naming the key and value:
// another rope type (dynamic, ...), an activation the family does not use, MLP biases,
// an output-projection bias, a scaled rope for sliding layers; from GGUF, a
// rope.scaling.type other than none/linear/longrope/yarn.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace quantlens {

// Identity of a registered family (src/model/families/registry.cpp). Only the registry
// and the family files branch on it; everything else reads the LayerSpec below.
enum class Arch {
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
    Mixtral,
    Qwen2Moe,
    Gemma2,
    Gemma3,
    Phi3,
    Gemma4,
    Qwen3Next,  // Gated DeltaNet hybrids (families/qwen3next.cpp, qwen35.cpp)
    Qwen35,
    Qwen35Moe,
    GptOss,  // gpt-oss (src/model/families/gptoss.cpp)
    Qwen3Moe,
    DeepseekV3,  // DeepSeek-V3/R1, Kimi-K2 (GGUF "deepseek2")
    Glm4Moe,     // GLM-4.5/4.6 (GGUF "glm4moe")
};

// How q/k are rotated. Normal: llama.cpp's interleaved pairs, on q/k rows that the GGUF
// stores permuted from HF's half-split layout (so an HF source permutes them on the way);
// Neox: half-split pairs on rows left as HF has them.
enum class RopeStyle { Normal, Neox };

// A dense expert every token goes through besides the routed ones.
enum class SharedExpert {
    None,
    SigmoidGated,  // scaled by sigmoid(ffn_gate_inp_shexp · x) (Qwen2-MoE)
    Ungated,       // added as is (DeepSeek-V3, GLM-4.5: n_shared_experts × moe_intermediate_size)
};

// The gate activation of the gated MLP: SiLU (SwiGLU) or GELU with the tanh approximation
// (GeGLU: transformers' gelu_pytorch_tanh, llama.cpp's gelu).
enum class Activation { SiLU, GeluTanh };

// A decoder layer in terms of the engines' shared blocks: RMSNorm → GQA attention (optional
// q/k/v bias, optional per-head q/k RMSNorm, RoPE of `rope` style) → [RMSNorm] → residual →
// RMSNorm → gated MLP → [RMSNorm] → residual, or, when ModelConfig::n_experts > 0, a routed
// MoE of SwiGLU experts. The family fills it; the CPU and CUDA engines read only this, never
// the family, and refuse what they lack (check_layer_supported).
struct LayerSpec {
    RopeStyle rope = RopeStyle::Normal;
    bool qkv_bias = false;
    bool qk_norm = false;  // RMSNorm over each head's channels before RoPE (Qwen3)
    // One attn_qkv matrix [C, (H + 2·KV)·D] whose output rows are q, k, v in that order, and
    // one ffn_up [C, 2F] whose first F outputs are the gate and the next F the up
    // projection (Phi-3; llama.cpp's converter keeps both fused).
    bool fused_qkv = false;
    bool fused_gate_up = false;
    Activation act = Activation::SiLU;
    // Gemma: RMSNorm of the attention output (post_attention_norm) and of the MLP output
    // (post_ffw_norm) before each residual add.
    bool post_norms = false;
    bool embed_scale = false;  // embeddings × sqrt(hidden) (Gemma)
    double attn_scale = 0.0;  // score scale; 0 = 1/sqrt(head_dim) (Gemma: query_pre_attn_scalar^-½)
    double attn_softcap = 0.0;   // scores → c·tanh(scores/c) before the softmax; 0 = none
    double final_softcap = 0.0;  // logits → c·tanh(logits/c); 0 = none
    // Routing: softmax over all experts, keep the top n_experts_used; when set, their weights
    // are renormalized to sum 1 (Mixtral; Qwen2-MoE's norm_topk_prob), else kept as is.
    bool moe_renormalize = true;
    SharedExpert shared_expert = SharedExpert::None;

    // --- DeepSeek-V3 / GLM-4.5 (engine/layers/mla.h, engine/layers/moe_routing.h) ---
    // Multi-head latent attention: q through a q_lora_rank bottleneck (attn_q_a, its norm,
    // attn_q_b), one shared latent kv of kv_lora_rank (attn_kv_a_mqa, attn_kv_a_norm) plus
    // a shared rope key of head_dim channels, decompressed per head by attn_k_b / attn_v_b.
    bool mla = false;
    // Routing by sigmoid scores: the experts are chosen on score + exp_probs_b within the
    // best expert groups (ModelConfig::n_expert_groups), weighted by the unbiased scores,
    // renormalized when moe_renormalize, times moe_weights_scale.
    bool moe_sigmoid = false;
    double moe_weights_scale = 1.0;  // routed_scaling_factor
    // The pre-MLP norm is the GGUF's post_attention_norm (GLM-4.5: the converter maps HF's
    // post_attention_layernorm to ATTN_POST_NORM), not ffn_norm.
    bool ffn_norm_post_attention = false;
    // --- gpt-oss (GptOssForCausalLM) ---
    // A learned logit per head (attn_sinks) joins each query's softmax denominator and is
    // dropped from the weights; o_proj, the router and the experts carry biases (read when
    // the tensors are there); the pre-MLP norm is stored as post_attention_norm, as llama.cpp's
    // converter names it.
    bool attn_sinks = false;
    bool ffn_norm_is_post_attention_norm = false;
    // Experts compute (up + 1)·gate·σ(swiglu_alpha·gate) with gate clamped to ≤ swiglu_limit
    // and up to ±swiglu_limit; 0 = the plain SwiGLU silu(gate)·up.
    double swiglu_limit = 0.0;
    double swiglu_alpha = 1.702;
};

// How a model rescales its rotary frequencies beyond the base θ^(-2i/d) (d = rotated dims).
struct RopeScaling {
    enum class Kind { None, Linear, Llama3, LongRope, Yarn };
    Kind kind = Kind::None;
    // Linear: every frequency divided by `factor`.
    // Llama 3.1/3.2 (rope_type "llama3"): wavelengths longer than
    // original_max_positions / low_freq_factor are divided by `factor`, those shorter than
    // original_max_positions / high_freq_factor are kept, and the band between is blended.
    double factor = 1.0;
    double low_freq_factor = 1.0;
    double high_freq_factor = 4.0;
    int64_t original_max_positions = 0;
    // LongRope (Phi-3): frequency i divided by short_factor[i], or by long_factor[i] when the
    // sequence is longer than original_max_positions; cos and sin multiplied by
    // attention_factor (from the config, else sqrt(1 + ln(max_pos/orig) / ln(orig)) when
    // max_pos > orig, else 1), as transformers' and llama.cpp's longrope do.
    std::vector<double> short_factor, long_factor;
    double attention_factor = 1.0;

    // --- YaRN (gpt-oss) ---
    // Pair i's frequency blends θ^(-2i/R) (extrapolation) and θ^(-2i/R)/factor
    // (interpolation) by a ramp from 1 to 0 between the pair indices where the wavelength
    // fits beta_fast and beta_slow rotations into original_max_positions; cos and sin are
    // multiplied by attention_factor (0.1·ln(factor) + 1 unless the config gives one).
    // yarn_truncate floors/ceils the ramp's ends (transformers' default and llama.cpp's
    // ggml_rope_yarn_corr_dims); gpt-oss's config sets "truncate": false.
    double yarn_beta_fast = 32.0;
    double yarn_beta_slow = 1.0;
    bool yarn_truncate = true;
    // DeepSeek's yarn (MLA families only; others refuse mscale/mscale_all_dim): cos/sin
    // get mscale(factor, mscale) / mscale(factor, mscale_all_dim) with mscale(s, m) =
    // 0.1·m·ln(s) + 1, and the attention score scale gains mscale(factor, mscale_all_dim)²
    // (yarn_score_scale).
    double mscale = 0.0, mscale_all_dim = 0.0;  // 0 = not given
};

// The layer description is a base so the engines read `config.qk_norm` directly.
struct ModelConfig : LayerSpec {
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
    int64_t rope_dims = 0;  // rotated channels per head (partial rotary); 0 = head_dim
    // θ of the sliding-window layers when they have their own, unscaled rope (Gemma 3's
    // local layers); 0 = every layer uses rope_theta and rope_scaling.
    double rope_theta_swa = 0.0;
    // llama.cpp's per-pair frequency divisors (GGUF tensor rope_freqs.weight, D/2 values),
    // which is how a GGUF carries llama3 scaling; empty when the file has none.
    std::vector<float> rope_freq_factors;
    int64_t sliding_window = 0;  // attention window in tokens; 0 = full causal attention
    // Which layers use the window (HF layer_types "sliding_attention"); empty = all of them.
    std::vector<bool> layer_sliding;
    // Added to every norm weight of a Hugging Face checkpoint to give the GGUF's value: 1 for
    // Gemma, whose RMSNorm multiplies by (1 + w) and whose converter stores 1 + w.
    double hf_norm_offset = 0.0;
    bool tie_embeddings = false;
    int64_t n_experts = 0;  // 0 = dense
    int64_t n_experts_used = 0;
    int64_t shared_expert_ffn = 0;  // width of the shared expert, if any
    std::string torch_dtype;        // "bfloat16", "float16", "float32"
    int64_t bos_token_id = -1;
    int64_t eos_token_id = -1;

    // --- Gemma 4 (model/families/gemma4.cpp, engine/layers/gemma4_layer.cpp) ---
    // One entry per layer when the model uses Gemma 4's decoder layer (empty otherwise): its
    // own attention shape (global layers have their own head size and KV heads), whether V
    // is the K projection (attention_k_eq_v: no attn_v, V = v-norm of the raw K), the layer
    // whose K/V it attends to (itself, or for the last num_kv_shared_layers layers the last
    // earlier layer of the same type), and its dense MLP width (double-wide on shared layers).
    struct Gemma4Layer {
        int64_t head_dim = 0;
        int64_t n_kv_heads = 0;
        int64_t ffn = 0;
        bool v_is_k = false;
        int64_t kv_source = 0;
    };
    std::vector<Gemma4Layer> gemma4_layers;
    int64_t ple_dim = 0;               // hidden_size_per_layer_input: per-layer embedding width
    int64_t expert_ffn = 0;            // Gemma 4's routed experts' width (beside the dense MLP)
    double rope_partial_global = 1.0;  // proportional rope: rotated fraction of global heads
    // Set by the shared rope parser for rope_type "proportional", which only a family that
    // implements it (Gemma 4) clears; the registry refuses a config where it stays set.
    bool rope_proportional = false;
    bool is_gemma4() const { return !gemma4_layers.empty(); }
    // --- Gated DeltaNet hybrids (Qwen3-Next, Qwen3.5 dense and MoE) ---
    // Layer l is a Gated DeltaNet (linear attention) layer when layer_linear[l]; the others
    // are gated full attention. Empty: not a hybrid. In a hybrid every layer's tensors follow
    // llama.cpp's qwen3next/qwen35 layout (engine/layers/hybrid_layer.cpp): the pre-FFN norm
    // is post_attention_norm, attn_q holds each head's query then its output gate.
    std::vector<bool> layer_linear;
    int64_t ssm_conv_kernel = 0;  // linear_conv_kernel_dim
    int64_t ssm_k_heads = 0;      // linear_num_key_heads (q and k heads)
    int64_t ssm_v_heads = 0;      // linear_num_value_heads
    int64_t ssm_k_dim = 0;        // linear_key_head_dim
    int64_t ssm_v_dim = 0;        // linear_value_head_dim
    // Value heads per q/k head in llama.cpp's tiled order (Qwen3.5's converter reorders
    // them): value head h reads q/k head h % ssm_k_heads; otherwise grouped as transformers
    // keeps them, h / (ssm_v_heads / ssm_k_heads) (Qwen3-Next).
    bool ssm_v_tiled = false;
    // Qwen3-Next's one ssm_ba [C, 2·n_v] (per q/k head: its value heads' b, then their a);
    // Qwen3.5: ssm_beta and ssm_alpha [C, n_v] each.
    bool ssm_fused_ba = false;
    // config.json intermediate_size when present (the converter's feed_forward_length); -1
    // when absent (Qwen3.5-MoE).
    int64_t hf_intermediate_size = -1;
    std::vector<int64_t> rope_sections;  // Qwen3.5 mrope_section (written, not used: text only)

    bool is_hybrid() const { return !layer_linear.empty(); }
    bool is_linear_layer(int64_t l) const {
        return is_hybrid() && layer_linear[static_cast<size_t>(l)];
    }
    int64_t ssm_conv_dim() const { return 2 * ssm_k_heads * ssm_k_dim + ssm_v_heads * ssm_v_dim; }
    // --- Qwen3-MoE (model/families/qwen3moe.cpp) ---
    // config.json's intermediate_size of an MoE model whose layers are all sparse: no layer
    // uses it, but llama.cpp's converter writes it as feed_forward_length (0 = none).
    int64_t moe_dense_ffn = 0;
    // config.json names the expert count num_local_experts (as transformers 5 saves it) rather
    // than num_experts: the converter then writes expert_count among the shared keys.
    bool moe_count_key_local = false;
    // --- DeepSeek-V3 / GLM-4.5 ---
    // Leading layers with a dense MLP of dense_ffn (intermediate_size) before the MoE ones.
    int64_t n_dense_layers = 0;
    int64_t dense_ffn = 0;
    // Grouped routing: experts in n_expert_groups equal groups, a group scored by the sum of
    // its two best biased scores, the best n_expert_groups_used groups compete.
    int64_t n_expert_groups = 1;
    int64_t n_expert_groups_used = 1;
    // MLA widths (LayerSpec::mla); head_dim is then qk_rope_head_dim, the rotated part.
    int64_t q_lora_rank = 0;
    int64_t kv_lora_rank = 0;
    int64_t qk_nope_dim = 0;
    int64_t v_head_dim = 0;
    // Layers after n_layers in the checkpoint (num_nextn_predict_layers: multi-token
    // prediction), which the forward pass does not use and the HF source skips.
    int64_t n_nextn_layers = 0;
    // config.json keys whose presence decides which GGUF keys llama.cpp's converter writes
    // (TextModel.set_gguf_parameters writes them only when present).
    bool hf_has_head_dim = false;
    bool hf_has_scoring_func = false;
    bool hf_has_expert_groups = false;
    bool hf_has_yarn_betas = false;
    bool hf_has_nextn = false;  // num_nextn_predict_layers

    bool is_moe() const { return n_experts > 0; }
    // Whether layer l routes to experts (false for the leading dense layers).
    bool is_moe_layer(int64_t l) const { return is_moe() && l >= n_dense_layers; }
    // Width of layer l's dense MLP.
    int64_t dense_ffn_width() const { return dense_ffn > 0 ? dense_ffn : ffn; }
    bool rope_neox() const { return rope == RopeStyle::Neox; }
    int64_t rotary_dims() const { return rope_dims > 0 ? rope_dims : head_dim; }
    // Whether layer l attends within sliding_window only.
    bool is_sliding(int64_t l) const {
        return sliding_window > 0 &&
               (layer_sliding.empty() || layer_sliding[static_cast<size_t>(l)]);
    }
};

// Rotary angular frequency of each of the rotary_dims()/2 pairs (angle = position × value)
// for a sequence of T tokens (longrope picks its factors by T) in a sliding (local) layer or
// not, with the model's scaling applied: the one definition the CPU and GPU engines share.
std::vector<double> rope_frequencies(const ModelConfig& config, int64_t T = 0,
                                     bool sliding = false);
// The factor multiplying cos and sin (longrope's and yarn's attention factor; 1 otherwise).
double rope_attention_factor(const ModelConfig& config);
// DeepSeek's yarn score factor mscale(factor, mscale_all_dim)²; 1 without yarn or mscale_all_dim.
double yarn_score_scale(const ModelConfig& config);
// YaRN's weight of the unscaled frequency for each rotary pair (1 − ramp; see RopeScaling).
std::vector<double> yarn_extrapolation_weights(const ModelConfig& config);
// llama.cpp's rope_freqs.weight for a llama3-scaled config (the divisor of each pair's base
// frequency, as its converter writes it); empty when the config has no such scaling.
std::vector<float> llama3_rope_freq_factors(const ModelConfig& config);

// --- Defined by the family registry (src/model/families/registry.cpp, ql_model) ---
// Parses config.json text; `path` names the file in errors. Throws Error on unknown
// architectures (listing the registered ones), missing or inconsistent fields.
ModelConfig parse_hf_config(const std::string& json_text, const std::string& path);
ModelConfig load_hf_config(const std::string& path);
// From llama.cpp GGUF metadata (general.architecture, ARCH.block_count, ...). A "llama"
// file with ARCH.expert_count > 0 is Mixtral; tie_embeddings is true when the file has no
// output.weight tensor. Throws Error naming the file and the missing key.
class GgufFile;
ModelConfig config_from_gguf(const GgufFile& gguf);
// The family's display name ("llama", "qwen2moe").
const char* arch_name(Arch arch);

// --- Shared fields, for the families (defined in model_config.cpp) ---
// Typed reads of one config.json object; every error names the file and the key.
struct HfConfigJson {
    const nlohmann::json& j;
    const std::string& path;
    const char* family;  // display name, for messages

    // Value of `key`, or `fallback` when absent or null; present with another type throws.
    int64_t get_int(const char* key, int64_t fallback) const;
    double get_float(const char* key, double fallback) const;
    bool get_bool(const char* key, bool fallback) const;
    int64_t require_positive(const char* key) const;
};
// Reads the shared fields listed at the top (everything but the FFN width, experts and the
// layer description) and refuses the shared unimplemented keys.
void read_hf_shared_fields(const HfConfigJson& cfg, ModelConfig& config);
// The same from GGUF metadata under `config.gguf_arch + "."`, plus qkv_bias and qk_norm
// from the presence of blk.0's bias and q-norm tensors. n_experts and n_experts_used are
// read too (families need them to claim a file).
void read_gguf_shared_fields(const GgufFile& gguf, ModelConfig& config);
// Positive, divisible head counts, an even head size, experts used within experts.
void check_config_consistent(const ModelConfig& config, const std::string& path);

}  // namespace quantlens
