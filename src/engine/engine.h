// CPU inference engine: full-sequence f32 forward pass (no KV cache) of the layer the
// config's LayerSpec describes (formats/model_config.h): RMSNorm, GQA attention (separate or
// fused q/k/v, optional q/k/v biases and q/k norms, normal or neox RoPE over all or part of
// each head, per-layer sliding windows, score scale and soft-capping), optional post-norms,
// SwiGLU or GeGLU MLP (separate or fused gate/up) or top-k experts, optional embedding
// scale and final logit soft-capping, and gpt-oss's attention sinks, o/router/expert
// biases and clamped SwiGLU (engine/layers). It never asks which family a model is; a LayerSpec
// feature an engine lacks is refused (check_layer_supported).
//
// Promises:
//  - Weights are read once through Model::read_f32 (dequantized if the source is a
//    quantized GGUF) into float buffers, in GGUF layout; their shapes are checked against
//    the config at construction, so metadata that disagrees with the tensors is an Error
//    naming the tensor.
//  - With ggml_numerics on a GGUF source, weights of a type quant/vec_dot.h covers (the
//    K-quants, legacy quants, IQ4_NL/IQ4_XS and F16) are not copied: matrix products read the
//    memory-mapped blocks with ggml's quantized dot products (activations quantized to
//    Q8_0/Q8_1/Q8_K per row), so host memory stays near the file size and results are ggml's by
//    construction. They are still checked for non-finite values once; original() dequantizes such a
//    weight on first use.
//  - Layer-granular execution for the sweep: embed → run_layer(0..L-1) → head, on a batch
//    of B sequences of T tokens each (h is [B, T, C], positions restart at 0 per sequence).
//    forward() is the three in a row.
//  - Per-tensor overrides by GGUF name replace a weight buffer without reloading the model
//    (a fake-quantized weight, typically); clear_override restores the original.
//  - A hook sees the embedding output, each layer's output, the final-norm output,
//    every linear layer's input activations (rows × cols, cols = the weight's row length)
//    and each MoE layer's chosen experts per token.
// Numerics follow Hugging Face transformers in float32: RMSNorm x·rsqrt(mean x² + eps)·w,
// RoPE angles pos·θ^(-2i/R) (R rotated channels, rope_frequencies), softmax attention with
// 1/sqrt(D) unless the config sets a scale, SiLU- or tanh-GELU-gated MLP, Mixtral routing
// softmax → top-k → renormalized weights (or the top-k probabilities as they are, when the
// config does not renormalize: Qwen3-MoE's norm_topk_prob false); DeepSeek-V3's multi-head
// latent attention and sigmoid grouped routing with a shared expert and leading dense layers
// (engine_deepseek.cpp).
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/ggml_type.h"
#include "engine/logits_model.h"
#include "formats/model_config.h"

namespace quantlens {

class Model;

// Throws Error (naming `what`, a path or engine, and the feature) when `config`'s layer uses
// a feature that engine does not implement: for both, a sigmoid-gated shared expert outside
// the hybrids, and with llama.cpp's numerics (`ggml_numerics`) multi-head latent attention,
// which they do not model. Both engines implement every other feature today; `kind` stays
// so a feature one engine lacks is refused here.
enum class EngineKind { Cpu, Cuda };
void check_layer_supported(const ModelConfig& config, const std::string& what,
                           EngineKind kind = EngineKind::Cpu, bool ggml_numerics = false);

struct EngineOptions {
    // Round every weight through F16 after loading, as llama.cpp's converter does when it
    // writes an F16 GGUF (to compare with llama.cpp figures measured on that file).
    bool f16_weights = false;
    // Round RoPE frequencies to BF16 like transformers does for a checkpoint loaded in
    // bfloat16 and then cast to float32 (the golden PyTorch logits were made that way:
    // with exact frequencies they differ by up to 0.02 at position 29 of llama-8m).
    // llama.cpp uses exact frequencies, so eval leaves this off.
    bool rope_bf16_freqs = false;
    // llama.cpp's CPU numerics, to compare with its perplexity/KLD figures: a quantized GGUF
    // weight multiplies in its blocks with ggml's dot products (quant/vec_dot.h); any other
    // matmul input is rounded as ggml converts it for the weight's type (F16, or Q8_0/Q8_K
    // for a fake-quantized override, see kernels.h); K/V and Q are rounded to F16 (ggml's
    // F16 KV cache) and so are the attention probabilities.
    bool ggml_numerics = false;
    // Gated DeltaNet layers run the step-by-step recurrence (the reference twin) instead of
    // the chunked form (engine/layers/gated_deltanet.h).
    bool deltanet_sequential = false;
};

struct HookEvent {
    enum class Kind {
        Embedding,    // layer = -1, data = h after embedding [rows = B*T, cols = C]
        LayerOutput,  // layer = l, data = h after layer l
        FinalNorm,    // layer = n_layers, data = output-norm rows that feed the head
        LinearInput,  // tensor = weight name, data = its input [rows, cols = weight ne[0]]
        // MoE layer l's routing: data = the chosen expert ids as floats [rows = B*T,
        // cols = n_experts_used], most probable first (for tests and routing statistics).
        Routing,
    };
    Kind kind;
    int layer;
    const std::string* tensor;  // weight name for LinearInput, nullptr otherwise
    int expert;                 // expert index for stacked expert weights, -1 otherwise
    const float* data;
    int64_t rows, cols;
};
using EngineHook = std::function<void(const HookEvent&)>;

struct TensorInfo;
// The type an engine built with `f16_weights` holds weight `t` as (Engine::stored_type before
// any override): F16 for a 2-D F32 or BF16 weight rounded through F16, else its type in the
// file. For callers without an engine (a GPU sweep).
GgmlType held_weight_type(const TensorInfo& t, bool f16_weights);

// A weight kept in its blocks (read in place here, or on the GPU) is still checked once for
// NaN/Inf, keeping Model::read_f32's promise without its float copy: Error naming `file`, the
// tensor, and the first bad element (or the block scale).
void check_blocks_finite(const std::string& file, const TensorInfo& t, const uint8_t* data,
                         size_t row_bytes);

class Engine final : public LogitsModel {
  public:
    explicit Engine(const Model& model, EngineOptions options = {});
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    const ModelConfig& config() const { return config_; }
    const Model& model() const { return model_; }
    int64_t n_layers() const { return config_.n_layers; }
    int64_t hidden() const { return config_.hidden; }
    int64_t vocab() const override { return config_.vocab; }
    std::string source_path() const override;
    // Floats per token row of the state h that embed() returns and run_layer()/head() take:
    // hidden(), plus for Gemma 4 the per-layer embedding inputs [L·P] and the K/V of the
    // layers that later KV-shared layers attend to (so a layer resumed from a cached h is
    // exact). Only the first hidden() floats of a row are the hidden state.
    int64_t state_width() const { return width_; }

    // tokens[B*T] → h[B*T, state_width()]. Throws Error on an id outside the vocabulary.
    std::vector<float> embed(std::span<const int32_t> tokens) const;
    // h[B*T, C] in place through layer l.
    void run_layer(int64_t l, float* h, int64_t B, int64_t T) const;
    // Final norm and output projection for positions t0..T-1 of each sequence:
    // h[B*T, C] → logits[B*(T-t0), V] (rows ordered by sequence, then position).
    std::vector<float> head(const float* h, int64_t B, int64_t T, int64_t t0 = 0) const;
    // embed → all layers → head(t0).
    std::vector<float> forward(std::span<const int32_t> tokens, int64_t B, int64_t T,
                               int64_t t0 = 0) const override;

    // Weight overrides by GGUF name; values in GGUF layout (n_elements floats). `type` is
    // the storage type the values stand for (only ggml_numerics looks at it).
    void set_override(const std::string& name, std::vector<float> values,
                      GgmlType type = GgmlType::F32);
    // Replaces a weight by quantized blocks in GGUF layout that matmuls read in place (a
    // quantized file's tensor; `blocks` must outlive the override). Only with ggml_numerics
    // and a type quant/vec_dot.h covers; returns false, installing nothing, otherwise (the
    // caller then passes floats to set_override). Throws Error naming `source` (the file
    // the blocks come from) on a size mismatch or a non-finite value in the blocks.
    bool set_override_blocks(const std::string& name, GgmlType type,
                             std::span<const uint8_t> blocks, const std::string& source);
    void clear_override(const std::string& name);
    void clear_overrides();
    bool has_override(const std::string& name) const {
        return overrides_.count(name) != 0 || block_overrides_.count(name) != 0;
    }
    // Fake-quantizes the original weight to `type` (importance: ne[0] floats or null) and
    // installs it as the override. Throws Error if the type cannot hold the row length.
    void override_with_type(const std::string& name, GgmlType type,
                            const float* importance = nullptr);
    // The original (not overridden) weight values, and the type they are stored as (F16 when
    // rounded through F16; what ggml_numerics rounds the matmul input for).
    const std::vector<float>& original(const std::string& name) const;
    GgmlType stored_type(const std::string& name) const { return types_.at(name); }
    // Whether the weight is multiplied in its quantized blocks, read in place from the GGUF
    // mapping (ggml_numerics on a GGUF source, a type quant/vec_dot.h covers, no override).
    bool reads_in_place(const std::string& name) const { return quantized(name) != nullptr; }

    void set_hook(EngineHook hook) { hook_ = std::move(hook); }
    void clear_hook() { hook_ = nullptr; }

  private:
    struct LayerNames;
    // Gemma 4's layer (engine/layers/gemma4_layer.h/.cpp): names, row layout, rope tables.
    struct Gemma4State;
    void gemma4_init();
    void gemma4_check_shapes() const;
    // Appends each row's per-layer embedding inputs and room for shared K/V to h[N, C].
    std::vector<float> gemma4_widen(std::span<const int32_t> tokens, std::vector<float> h) const;
    void gemma4_run_layer(int64_t l, float* h, int64_t B, int64_t T) const;
    void gemma4_ffn(int64_t l, const float* h, float* out, int64_t N) const;  // MLP (+ MoE)
    const float* gemma4_row(const std::string& name, int64_t row, std::vector<float>& tmp) const;
    const float* weight(const std::string& name) const;      // override or original
    const float* weight_opt(const std::string& name) const;  // nullptr if absent
    void check_shapes() const;
    // The check behind every check_*_shapes: tensor `name` must have shape `ne`, and exist
    // when `required`; `implied_by` names what implies the shape ("the Gemma 4 config").
    void expect_shape(const std::string& name, const std::vector<int64_t>& ne, bool required,
                      const std::string& implied_by) const;
    void attention_block(int64_t l, float* h, float* xn, int64_t B, int64_t T) const;
    // RMSNorm of rows: ggml's float order (ggml_ops.h) with ggml_numerics, else kernels.h's.
    void rmsnorm(float* out, const float* in, const std::string& weight_name, int64_t N,
                 int64_t C) const;
    // Rope, attention and output projection of layer l in ggml-cpu's float order.
    void attention_ggml_block(int64_t l, float* h, float* xn, int64_t B, int64_t T) const;
    void ffn_dense(int64_t l, const float* xn, float* out, int64_t N) const;
    void ffn_dense_rows(int64_t l, const float* xn, float* out, int64_t N) const;
    // q[N, H·D], k/v[N, KV·D] from the normed input, by separate or fused projections.
    void qkv_projections(int64_t l, const float* xn, int64_t N, std::vector<float>& q,
                         std::vector<float>& k, std::vector<float>& v) const;
    void ffn_moe(int64_t l, const float* xn, float* out, int64_t N) const;
    // DeepSeek-V3 / GLM-4.5 (engine_deepseek.cpp): MLA attention (layers/mla.h), sigmoid
    // grouped routing into expert → (row, weight) lists (layers/moe_routing.h), the ungated
    // shared expert added to `out`, and the shapes of their tensors.
    void mla_attention_block(int64_t l, float* h, float* xn, int64_t B, int64_t T) const;
    void route_sigmoid(int64_t l, const float* logits, int64_t N,
                       std::vector<std::vector<std::pair<int64_t, float>>>& routed) const;
    void ungated_shared_expert_add(int64_t l, const float* xn, float* out, int64_t N) const;
    void check_deepseek_shapes() const;
    // Gated DeltaNet hybrids (engine/layers/hybrid_layer.cpp): the whole layer, its token
    // mixers (out[N, C] from the normed input) and the sigmoid-gated shared expert (added to
    // out), and the shape checks that replace check_shapes' attention part.
    void hybrid_layer(int64_t l, float* h, int64_t B, int64_t T) const;
    void deltanet_block(int64_t l, const float* xn, float* out, int64_t B, int64_t T) const;
    void gated_attention_block(int64_t l, const float* xn, float* out, int64_t B, int64_t T) const;
    void shared_expert_add(int64_t l, const float* xn, float* out, int64_t N) const;
    void check_hybrid_shapes() const;
    // The input of the matmul with weight `name`: `in` itself, or with ggml_numerics a
    // copy in `scratch` rounded for that weight's type.
    const float* mm_input(const std::string& name, const float* in, int64_t N, int64_t C,
                          std::vector<float>& scratch) const;
    void emit(HookEvent::Kind kind, int layer, const std::string* tensor, int expert,
              const float* data, int64_t rows, int64_t cols) const;
    // out[N, OUT] = in[N, IN] · weight(name)ᵀ (+ bias): the quantized blocks when the weight
    // is read in place, else the float buffer (through mm_input). `expert` selects one
    // [OUT, IN] slice of a stacked expert tensor.
    void linear(float* out, const std::string& name, const float* in, const float* bias, int64_t N,
                int64_t IN, int64_t OUT, int64_t expert = 0) const;
    // Several products of one input (q/k/v, gate/up), each as linear() computes it; when every
    // weight is read in place with the same activation format, the input rows are quantized
    // once for all of them.
    struct LinearOut {
        const std::string* name;
        float* out;
        const float* bias;
        int64_t OUT;
    };
    void linear_shared(const float* in, int64_t N, int64_t IN,
                       std::initializer_list<LinearOut> outs) const;

    // A weight read in place from the GGUF mapping (ggml_numerics): `rows` rows of
    // `row_bytes` bytes of `type`.
    struct QuantizedWeight {
        GgmlType type;
        const uint8_t* data;
        size_t row_bytes;
    };
    // The blocks a matmul reads in place: a block override, else the weight itself; nullptr
    // when the weight is (or is overridden by) floats.
    const QuantizedWeight* quantized(const std::string& name) const;

    const Model& model_;
    ModelConfig config_;
    std::unordered_map<std::string, std::vector<float>> weights_;
    std::unordered_map<std::string, QuantizedWeight> quantized_;
    std::unordered_map<std::string, QuantizedWeight> block_overrides_;
    // Dequantized copies of quantized_ weights made by original() on first use.
    mutable std::unordered_map<std::string, std::vector<float>> dequantized_;
    mutable std::mutex dequantized_mutex_;
    std::unordered_map<std::string, std::vector<float>> overrides_;
    std::unordered_map<std::string, GgmlType> types_;  // storage type per weight
    std::unordered_map<std::string, GgmlType> override_types_;
    std::vector<LayerNames> names_;
    std::string output_name_;  // "output.weight" or "token_embd.weight" when tied
    EngineHook hook_;
    EngineOptions options_;
    // ggml_numerics on a layer engine/ggml_ops.h reproduces (plain causal attention, rope
    // without longrope/yarn, head_dim a multiple of 8): norms, rope, attention, SwiGLU, F32
    // matrices of a GGUF and softmax MoE routing in ggml-cpu's float order; otherwise those
    // keep the transformers-order kernels.
    bool ggml_layer_ = false;
    float ggml_freq_scale_ = 1.0f;
    std::vector<float> ggml_freq_factors_;
    int64_t width_ = 0;                    // state_width()
    std::unique_ptr<Gemma4State> gemma4_;  // set for Gemma 4 models
};

}  // namespace quantlens
