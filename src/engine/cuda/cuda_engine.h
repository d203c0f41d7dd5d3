// CUDA inference engine: the CPU engine's full-sequence forward pass (engine/engine.h) on one
// GPU, with weights in BF16 or F16 and F32 accumulation.
//
// Promises:
//  - Same model families and numerics as the CPU engine (Llama/Mistral, Qwen2 biases, Qwen3
//    q/k norms, Mixtral/Qwen3-MoE top-k routing; Gemma 2/3's √hidden embeddings, post-norms,
//    GeGLU, soft-capping, sliding windows and local rope; Phi-3's fused attn_qkv/ffn_up,
//    partial rotary and longrope; gpt-oss's attention sinks, yarn, o/router/expert biases
//    and clamped SwiGLU; GLM-4.5's grouped sigmoid routing (the CPU's own function on the
//    GPU's router logits), shared expert and leading dense layers; DeepSeek-V3's multi-head
//    latent attention in the CPU's absorbed form (per-head attn_k_b / attn_v_b GEMMs around
//    an MQA over [latent | rope key]); GGUF layout, llama q/k rows permuted so RoPE is the
//    adjacent-pair style, neox for qwen; the Gated DeltaNet hybrids (Qwen3-Next, Qwen3.5) with
//    their conv, gated delta rule in its chunked form, gated RMSNorm, gated full attention and
//    sigmoid-gated shared expert (deltanet.h); Gemma 4's per-layer head sizes and KV heads,
//    K=V and KV-shared layers, v-norm, proportional rope, per-layer embeddings, the MoE block
//    beside the MLP and the layer scalar, in the CPU's row layout (engine/layers/gemma4_layer.h)),
//    with these precision choices:
//    matrix weights and GEMM inputs in the 16-bit type, GEMM accumulation and outputs that feed the
//    residual stream in F32 (the residual stream h stays F32), 1-D weights (norms, biases) in F32,
//    RoPE tables computed in double on the host exactly like the CPU engine; MoE routers in F32
//    (weight and input), as llama.cpp keeps ffn_gate_inp.
//  - GEMMs through cuBLAS (q|k|v and gate|up fused into one GEMM each, o and down add into
//    h through beta = 1); RMSNorm, RoPE, causal GQA softmax, SwiGLU, routing, embedding and
//    the scoring reductions are our kernels (cuda_kernels.cuh).
//  - Layer-granular execution on device pointers for the sweep, forward_logits() for tests.
//  - Weight overrides by GGUF name, from host floats or fake-quantized on the GPU
//    (fake_quant.h); clear_override restores the original.
//  - Quantized weights can stay in their GGUF blocks on the GPU (quantized_storage below), so
//    a quantized file needs about its own size in GPU memory: each GEMM dequantizes its rows
//    (dequant.h, the CPU's values bit for bit) into a tile just before it runs.
//  - Throws Error (never aborts) on CUDA/cuBLAS failures, naming the call.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/ggml_type.h"
#include "engine/sweep_backend.h"
#include "formats/model_config.h"

namespace quantlens {

class Model;

namespace cuda {

// Storage of weights and activations. F32 holds fake-quantized and dequantized values exactly
// (llama.cpp's numerics need it); the GEMMs then run in plain F32, several times slower.
enum class Precision { BF16, F16, F32 };

struct CudaEngineOptions {
    Precision precision = Precision::BF16;
    int device = 0;
    bool rope_bf16_freqs = false;  // as EngineOptions::rope_bf16_freqs
    // Gated DeltaNet layers step by step (deltanet.h's reference twin), as
    // EngineOptions::deltanet_sequential; otherwise the chunked form.
    // QUANTLENS_DELTANET_SEQUENTIAL=1/0 overrides (the benchmark's same-run reference).
    bool deltanet_sequential = false;
    // Tokens per batch the scratch buffers are sized for (sequences are batched up to it).
    int64_t max_tokens = 8192;
    // GPU memory for weights, in bytes. When the model's weights exceed it they stay in pinned
    // host memory and each layer is copied in when a pass reaches it (least recently used
    // slots evicted). 0: stream only when the weights exceed 70 % of free GPU memory.
    int64_t weight_budget_bytes = 0;
    // llama.cpp's CPU numerics (EngineOptions::ggml_numerics): every matmul input is rounded as
    // ggml converts it for the weight's current type (F16/BF16, or Q8_0/Q8_K blocks for a
    // quantized one: engine/kernels.h's ggml_act_rounding), Q, K and V are rounded to F16 (its
    // F16 KV cache) and so are the attention probabilities. Needs Precision::F32.
    bool ggml_numerics = false;
    // Attention through flash_attention.h where it applies (F16 storage, head_dim 64 or 128,
    // not ggml_numerics, whose F16 probabilities are normalized before P·V); otherwise scores
    // and probabilities are materialized. Off: on an H100 it measured 3 % slower per 8B layer
    // than the materialized path (bench/RESULTS.md). QUANTLENS_FLASH_ATTENTION=1/0 overrides.
    bool flash_attention = false;
    // F32 storage (ggml_numerics) may multiply on TF32 tensor cores (cuBLAS's FAST_TF32): GEMM
    // inputs are then rounded to 11 significant bits inside the GEMM. F16 and BF16 values
    // (weights, ggml's F16 Q/K/V and probabilities) pass exactly; dequantized weights and
    // Q8_0/Q8_K-rounded activations move by at most 2^-11 of their value. Off until measured on
    // a GPU: full F32 runs an 8B at ~2,050 tokens/s (bench/RESULTS.md). QUANTLENS_TF32=1/0
    // overrides.
    bool tf32 = false;
    // ggml_numerics: weights of type F16 or BF16 (a base model) multiply on tensor cores from a
    // 16-bit copy (exact products, F32 accumulation; ~10× faster than F32 GEMMs), where GPU
    // memory holds the copy. QUANTLENS_HALF_GEMM=0 turns it off.
    bool half_gemm_for_16bit_weights = true;
    // Weights held in their GGUF blocks (name → type; quantized_storage_types() lists a
    // model's). A slot whose tensors are all listed stores their bytes as the file has them,
    // and each GEMM over it dequantizes up to dequant_tile_bytes of rows into the storage type
    // (the values load_model would have uploaded, bit for bit), then multiplies. An override,
    // or a fake-quantization, turns that slot back into plain values.
    std::unordered_map<std::string, GgmlType> quantized_storage = {};
    int64_t dequant_tile_bytes = int64_t{32} << 20;  // stays in an H100's 50 MB L2
};

// True when a CUDA device can be used; otherwise `why` says what is missing.
bool device_available(std::string* why = nullptr);
// "NVIDIA H100 80GB HBM3, 132 SMs, 79.1 GiB, CUDA 13.0" (throws if none).
std::string device_description();
// The most device memory in use (every process's, as cudaMemGetInfo reports it) seen after
// an allocation or synchronization of this process; 0 when it used no GPU.
int64_t peak_device_bytes();

// An imatrix entry handed to CudaEngine::override_with_type (host memory).
struct FakeQuantImportanceHost {
    std::span<const float> values;  // [n_mat][n_per_row]
    bool weigh_error = false;
};

// What a tap (CudaEngine::set_tap) sees during run_layer, on the device: the input of a group
// of matrices that share it (q, k and v; gate and up; one expert's gate and up), or a layer's
// output hidden state.
// The CPU engine's HookEvent (engine/engine.h) in device form: calibration and GPTQ reduce it
// where it is (cuda_stats.h); download_activations feeds the CPU twins of those reductions.
struct ActivationTap {
    enum class Kind { LinearInput, LayerOutput };
    Kind kind;
    int layer;
    const std::vector<std::string>* weights;  // GGUF names fed by this input (LinearInput)
    const void* data;                         // device: [rows, cols]
    bool f32;                                 // f32, else the engine's 16-bit storage type
    int64_t rows, cols;
    int expert = -1;  // stacked experts: the matrix these rows were routed to (-1: none)
};
using ActivationTapFn = std::function<void(const ActivationTap&)>;

class CudaEngine {
  public:
    CudaEngine(const ModelConfig& config, CudaEngineOptions options = {});
    ~CudaEngine();
    CudaEngine(const CudaEngine&) = delete;
    CudaEngine& operator=(const CudaEngine&) = delete;

    const ModelConfig& config() const;
    const CudaEngineOptions& options() const;

    // Every weight the forward pass reads, by GGUF name, with its GGUF shape (ne[0] first).
    struct WeightSpec {
        std::string name;
        std::vector<int64_t> ne;
        bool required;
    };
    std::vector<WeightSpec> weight_specs() const;

    // Uploads one weight (n_elements floats, GGUF layout), rounding to the storage type.
    // `type`: what the values stand for (only ggml_numerics looks at it). round_f16: the values
    // go through F16 first (on the GPU; f16_weights), so `type` is then F16.
    void load_weight(const std::string& name, const float* host, int64_t n,
                     GgmlType type = GgmlType::F32, bool round_f16 = false);
    // Fills every weight with deterministic pseudo-random values on the GPU (benchmarks):
    // matrices uniform in ±sqrt(3/fan_in), norms 1, biases 0.
    void load_random_weights(uint64_t seed);
    // Uploads every weight of `model` (dequantized through Model::read_f32; round_f16 rounds
    // the 2-D F32/BF16 weights through F16 first, as an F16 GGUF of the model holds them, and
    // leaves norms and quantized weights as they are: engine.h's held_weight_type). Tensor i+1
    // is decoded on the host while tensor i is copied to the GPU.
    void load_model(const Model& model, bool round_f16 = false);
    // Copies a quantized_storage weight's blocks as the file holds them (`file` names it in
    // errors: a size or type that is not the file's, a non-finite block scale). A weight the
    // engine holds as plain values is dequantized on the host and loaded as load_weight does.
    void load_weight_blocks(const std::string& name, GgmlType type, std::span<const uint8_t> blocks,
                            const std::string& file);
    bool complete() const;  // every required weight loaded
    // Grows the activation scratch so batches of up to `tokens` rows fit (max_tokens).
    void reserve_tokens(int64_t tokens);
    int64_t weight_bytes() const;
    bool streaming() const;                 // weights live in host memory (see the options)
    int64_t resident_weight_bytes() const;  // weights on the GPU now

    // ---- overrides ----
    // `type`: what the values stand for (only ggml_numerics looks at it, to round the input).
    void set_override(const std::string& name, const float* host, int64_t n,
                      GgmlType type = GgmlType::F32);
    // Fake-quantizes the stored original on the GPU. Returns false (and installs nothing)
    // when `type` has no GPU kernel or does not fit the row; the caller then falls back to
    // set_override with the CPU result. With `sums`, also reduces the weight error of the
    // installed values against the original on the GPU (deterministic: fixed per-block
    // partials summed on the host in block order).
    // With `importance` (the tensor's imatrix entry, n_mat × n_per_row floats, finite and
    // ≥ 0) the kernels take the importance paths, and when importance.weigh_error the
    // importance-weighted error sums are reduced too (the CPU sweep weighs 2-D tensors only).
    bool override_with_type(const std::string& name, GgmlType type, WeightErrorSums* sums = nullptr,
                            const FakeQuantImportanceHost* importance = nullptr);
    void clear_override(const std::string& name);
    void clear_overrides();
    // The stored original as floats (the 16-bit values widened), for CPU fallbacks.
    std::vector<float> original(const std::string& name) const;
    // The values the forward pass uses now (the override if one is installed), as floats.
    std::vector<float> values(const std::string& name) const;
    int64_t n_elements(const std::string& name) const;

    // ---- layer-granular execution on device buffers ----
    // Floats per row of the state that embed, run_layer and head pass along: the hidden size C,
    // or for Gemma 4 the CPU engine's wider rows (Engine::state_width(); the first C floats
    // are the hidden state).
    int64_t state_width() const;
    // d_tokens[N] (device) → d_h[N, state_width()] (device, f32).
    void embed(const int32_t* d_tokens, int64_t N, float* d_h);
    // d_h[B*T, state_width()] in place through layer l (B*T ≤ max_tokens).
    void run_layer(int64_t l, float* d_h, int64_t B, int64_t T);
    // Final norm + output projection for positions t0..T-1 of each sequence:
    // d_logits[B*(T-t0), V] f32 (device).
    void head(const float* d_h, int64_t B, int64_t T, int64_t t0, float* d_logits);
    // Host convenience: tokens[B*T] → logits [B*(T-t0), V] on the host.
    std::vector<float> forward_logits(const std::vector<int32_t>& tokens, int64_t B, int64_t T,
                                      int64_t t0 = 0);
    // −log p of each next token, scored on the GPU: rows t0..t0+S−1 of each sequence
    // (t0 + S < T), row (b, s) against tokens[b·T + t0 + s + 1], out[b·S + s]; kld.h's
    // token_nll. The head runs over the vocabulary ~32 MiB of logits at a time, so neither the
    // logits nor a dequantized output matrix ever exist whole.
    std::vector<float> next_token_nll(const std::vector<int32_t>& tokens, int64_t B, int64_t T,
                                      int64_t t0, int64_t S);
    void synchronize();

    // ---- activation taps (calibration) ----
    // Installs `tap`, called in run_layer at every matmul input and layer output (the router's
    // input, and each expert's routed rows with `expert` set, in a mixture of experts), and in
    // head at the head's input (layer −1). Empty: none.
    void set_tap(ActivationTapFn tap);
    // Installs `observer`, called in run_layer with each routed layer's expert choices (the
    // ids the router kernel chose, already on the host for the expert GEMMs). Empty: none.
    void set_routing_observer(RoutingObserver observer);
    // host[n] ← n device values of a tap (its storage type widened to floats).
    void download_activations(const ActivationTap& tap, float* host);
    // tokens[B*T] → embedding and every layer (taps fire), no head.
    void run_layers(const std::vector<int32_t>& tokens, int64_t B, int64_t T);

    struct Impl;

  private:
    std::unique_ptr<Impl> impl_;
};

// The weights of `model` the engine can keep in their blocks (quantized_storage): matrices
// whose file type has a GPU dequantization kernel (dequant.h) and whose bytes the source
// holds as GGUF blocks. Empty when QUANTLENS_GPU_BLOCKS=0 (the dequantized path, to compare).
std::unordered_map<std::string, GgmlType> quantized_storage_types(const Model& model);
bool keeps_blocks_on_gpu(GgmlType type, size_t n_dims);

// GGUF names of the matrices the fake-quant sweep perturbs, in model order.
std::vector<std::string> quantizable_weights(const ModelConfig& config);

}  // namespace cuda
}  // namespace quantlens
