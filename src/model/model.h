// A language model, from a Hugging Face directory or a GGUF file, seen one way.
//
// Tensors are exposed in llama.cpp's GGUF layout whatever the source, so the engine, the
// sweep and the GGUF writer never branch on where a model came from:
//  - names are GGUF names (blk.N.attn_q.weight); hf_name keeps the Hugging Face name;
//  - ne is in ggml order (ne[0] = row length = input features);
//  - for families with normal RoPE (LayerSpec::rope) q/k rows are permuted exactly as
//    llama.cpp's converter does for its "llama" architecture;
//  - DeepSeek's kv_b_proj is split into attn_k_b (transposed per head) and attn_v_b, and
//    e_score_correction_bias is exp_probs_b.bias, as llama.cpp's converter writes them;
//  - Mixtral/Qwen2-MoE experts are stacked into 3-D tensors blk.N.ffn_{gate,up,down}_exps
//    (ne = [cols, rows, n_experts]); hf_name is then the pattern with "{E}" for the expert.
// Weights stay memory-mapped; read_f32 converts or dequantizes on demand.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/ggml_type.h"
#include "formats/model_config.h"

namespace quantlens {

class GgufFile;

enum class TensorRole {
    Embed,       // token_embd
    Output,      // output (lm head)
    OutputNorm,  // output_norm
    AttnNorm,
    FfnNorm,
    AttnQ,
    AttnK,
    AttnV,
    AttnO,
    AttnQNorm,  // Qwen3 q_norm / k_norm
    AttnKNorm,
    AttnQBias,  // Qwen2 biases
    AttnKBias,
    AttnVBias,
    FfnGate,
    FfnUp,
    FfnDown,
    Router,      // ffn_gate_inp
    ExpertGate,  // ffn_gate_exps
    ExpertUp,
    ExpertDown,
    SharedGate,  // Qwen2-MoE shared expert
    SharedUp,
    SharedDown,
    SharedRouter,
    AttnQKV,       // fused q/k/v projection (Phi-3's attn_qkv)
    AttnPostNorm,  // Gemma's post_attention_norm (of the attention output)
    FfnPostNorm,   // Gemma's post_ffw_norm (of the MLP output)
    // Gemma 4: per-layer embeddings (PLE), the layer's output scalar, the MoE block's norms,
    // fused experts and scales, and the proportional rope's frequency factors.
    PleTokenEmbd,      // per_layer_token_embd [L·P, vocab]
    PleModelProj,      // per_layer_model_proj [C, L·P]
    PleProjNorm,       // per_layer_proj_norm [P]
    PleInpGate,        // blk.N.inp_gate [C, P]
    PleProj,           // blk.N.proj [P, C]
    PlePostNorm,       // blk.N.post_norm [C]
    LayerOutputScale,  // blk.N.layer_output_scale [1]
    FfnPreNorm2,       // blk.N.pre_ffw_norm_2 (experts' input norm)
    FfnPostNorm1,      // blk.N.post_ffw_norm_1 (dense MLP branch)
    FfnPostNorm2,      // blk.N.post_ffw_norm_2 (expert branch)
    ExpertGateUp,      // blk.N.ffn_gate_up_exps [C, 2F, E]: gate rows, then up rows
    RouterScale,       // blk.N.ffn_gate_inp.scale [C]
    ExpertScale,       // blk.N.ffn_down_exps.scale [E]
    RopeFreqs,         // rope_freqs [D/2]
    // Gated DeltaNet hybrids (Qwen3-Next, Qwen3.5); their attn_qkv is AttnQKV.
    AttnGate,      // attn_gate: the DeltaNet's output gate z
    SsmConv,       // ssm_conv1d: causal depthwise conv (kept F32 by llama.cpp)
    SsmA,          // ssm_a = −exp(A_log)
    SsmDt,         // ssm_dt.bias
    SsmNorm,       // ssm_norm: gated RMSNorm
    SsmOut,        // ssm_out: output projection
    SsmBetaAlpha,  // ssm_ba (Qwen3-Next's fused β/α input projection)
    SsmBeta,       // ssm_beta (Qwen3.5)
    SsmAlpha,      // ssm_alpha (Qwen3.5)
    // DeepSeek-V3 multi-head latent attention and sigmoid routing
    AttnQA,           // attn_q_a: hidden → q_lora_rank
    AttnQANorm,       // attn_q_a_norm
    AttnQB,           // attn_q_b: q_lora_rank → heads × (nope + rope)
    AttnKVAMqa,       // attn_kv_a_mqa: hidden → kv_lora_rank + rope
    AttnKVANorm,      // attn_kv_a_norm
    AttnKB,           // attn_k_b: per head [nope → kv_lora_rank] (kv_b_proj's k rows, transposed)
    AttnVB,           // attn_v_b: per head [kv_lora_rank → v_head_dim] (kv_b_proj's v rows)
    ExpertProbsBias,  // exp_probs_b.bias: e_score_correction_bias, added for selection only
    Other,
};

const char* role_name(TensorRole role);  // "attn_q", "ffn_down", "expert_gate", ...

struct TensorInfo {
    std::string name;         // GGUF name
    std::string hf_name;      // Hugging Face name ("" if the source has none)
    std::vector<int64_t> ne;  // ggml order
    GgmlType type;            // storage type in the source
    int layer = -1;           // block index, -1 for embed/output/output_norm
    TensorRole role = TensorRole::Other;
    bool quantizable = false;  // a 2-D+ weight matrix llama.cpp would quantize (not norms, biases)

    int64_t n_elements() const;
    int64_t n_per_row() const { return ne.empty() ? 0 : ne[0]; }
    int64_t n_rows() const { return n_per_row() ? n_elements() / n_per_row() : 0; }
    uint64_t nbytes() const;  // in the source's storage type
};

class Model {
  public:
    enum class Source { HuggingFace, Gguf };

    virtual ~Model() = default;
    // `path`: an HF directory (config.json + safetensors) or a .gguf file. Throws Error.
    static std::unique_ptr<Model> open(const std::string& path);

    virtual Source source() const = 0;
    const std::string& path() const { return path_; }
    const ModelConfig& config() const { return config_; }
    const std::vector<TensorInfo>& tensors() const { return tensors_; }
    const TensorInfo* find(const std::string& gguf_name) const;
    const TensorInfo& get(const std::string& gguf_name) const;  // throws Error naming it

    // Float values in GGUF layout (size = n_elements). Thread-safe. A NaN or infinity is an
    // Error naming the tensor and the element: no measurement of such a model means anything.
    void read_f32(const TensorInfo& tensor, std::span<float> out) const;
    std::vector<float> read_f32(const TensorInfo& tensor) const;

  protected:
    // The source's conversion or dequantization into `out`, before the finiteness check.
    virtual void decode_f32(const TensorInfo& tensor, std::span<float> out) const = 0;

  public:
    // Raw stored bytes in GGUF layout, when the source stores them that way (GGUF files);
    // empty otherwise.
    virtual std::span<const uint8_t> raw(const TensorInfo& tensor) const { return {}; }

    // Hash of the weight files (xxHash64, hex): identifies the model in job stores.
    virtual std::string content_hash() const = 0;
    // tokenizer.json path for HF sources; the GGUF file (tokenizer.ggml.*) otherwise.
    virtual std::string tokenizer_path() const = 0;
    // The GGUF file, when the source is one (metadata for the tokenizer and writer).
    virtual const GgufFile* gguf() const { return nullptr; }

    int64_t total_params() const;
    uint64_t total_bytes() const;

  protected:
    std::string path_;
    ModelConfig config_;
    std::vector<TensorInfo> tensors_;
};

}  // namespace quantlens
