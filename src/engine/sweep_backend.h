// What a sweep needs from an inference backend (CPU engine now, CUDA later): evaluate the
// model with some weights replaced, against the full-precision reference on the same
// tokens, returning only scalars.
//
// prepare() runs the reference once and keeps what later evaluations reuse: the input of
// every layer for every evaluation token (the prefix cache) and the reference
// log-probabilities at the scored positions. evaluate(from_layer) then recomputes only
// layers ≥ from_layer, starting from the cached input of that layer; from_layer = 0 with
// recompute_embedding also redoes the embedding lookup (token_embd perturbed), and
// from_layer = n_layers runs only the head (output perturbed).
//
// Overrides go to the backend and nowhere else: set_override with values the caller computed
// (the CPU fake quantizers, importance-weighted or GPTQ-rounded), or set_fake_quant_override,
// which quantizes on the backend's own device and returns the weight-error sums there, so a
// GPU item never copies a tensor to or from the host. The CPU backend (analysis/sweep/sweep_cpu.h)
// and the CUDA one (engine/cuda/cuda_sweep.h) are chosen by one factory, make_sweep_backend
// in analysis/sweep/sweep.cpp.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/ggml_type.h"

namespace quantlens {

// Token chunks in llama.cpp's perplexity layout: n_chunks sequences of n_ctx tokens, BOS
// first; positions first_scored .. n_ctx-2 predict the next token and are scored.
struct EvalChunks {
    int64_t n_chunks = 0;
    int64_t n_ctx = 0;
    int64_t first_scored = 0;     // n_ctx / 2
    std::vector<int32_t> tokens;  // [n_chunks * n_ctx]
    int64_t n_scored() const { return n_chunks * (n_ctx - 1 - first_scored); }
};

// Sums over scored tokens (divide by n_scored for means).
struct PerturbedStats {
    int64_t n_scored = 0;
    double kld_sum = 0;  // Σ KL(p_ref ‖ p)
    double kld_max = 0;
    // Per-token KL(p_ref ‖ p) in scoring order, for the tails (p99, p99.9); empty when the
    // backend does not return them (then no tail is recorded, never a guessed one).
    std::vector<float> token_kld;
    double nll_sum = 0;             // Σ −log p(next token)
    double ref_nll_sum = 0;         // the reference's Σ −log p(next token)
    int64_t top1_same = 0;          // argmax agrees with the reference
    double dp_sq_sum = 0;           // Σ (p(next) − p_ref(next))²
    std::vector<double> layer_mse;  // [n_layers] mean (h − h_ref)² of each layer's output
    double final_mse = 0;           // the same at the final norm output (input of the head)
};

// Sums over all elements of a weight w and its replacement ŵ (e = ŵ − w), from which
// analysis/measure/weight_metrics.h derives RMSE, relative Frobenius, cosine and SNR.
struct WeightErrorSums {
    int64_t n = 0;
    double sum_e2 = 0, sum_abs_e = 0, max_abs_e = 0;
    double sum_w2 = 0, sum_wh2 = 0, sum_w_wh = 0;
    // Importance-weighted (a_j = imatrix entry of the value's column): Σ a·e², Σ a·w².
    bool has_importance = false;
    double sum_imp_e2 = 0, sum_imp_w2 = 0;
};

// One routed layer's expert choices in a forward pass: `ids` holds rows × k expert indices,
// row-major (sweep --experts counts them over the reference pass).
using RoutingObserver =
    std::function<void(int layer, std::span<const int32_t> ids, int64_t rows, int64_t k)>;

class SweepBackend {
  public:
    virtual ~SweepBackend() = default;
    virtual void prepare(const EvalChunks& chunks) = 0;
    virtual PerturbedStats evaluate(int64_t from_layer, bool recompute_embedding) = 0;
    virtual int64_t n_layers() const = 0;

    // The weight as the forward pass stores it, widened to floats: what fake quantization
    // starts from (F16-rounded when the sweep rounds weights through F16).
    virtual std::vector<float> original(const std::string& name) const = 0;
    // Replaces a weight (GGUF layout) until clear_override; `type` is what the values stand
    // for (it decides the activation rounding under ggml numerics).
    virtual void set_override(const std::string& name, std::vector<float> values,
                              GgmlType type) = 0;
    // Fake-quantizes the stored weight to `type` on the backend's device, installs it and
    // returns the weight-error sums against the stored original; nullopt (nothing installed)
    // when the backend has no kernel for this type and row length. `importance` (the
    // tensor's imatrix entry, [n_mat][n_per_row]) selects the quantizers' importance paths;
    // weigh_error also importance-weights the error sums.
    virtual std::optional<WeightErrorSums> set_fake_quant_override(
        const std::string& name, GgmlType type, std::span<const float> importance = {},
        bool weigh_error = false) {
        return std::nullopt;
    }
    virtual void clear_override(const std::string& name) = 0;
    // Calls `observer` with every routed layer's expert choices of the forward passes that
    // follow (prepare()'s reference pass, for sweep --experts); an empty function stops it.
    virtual void observe_routing(RoutingObserver observer) = 0;
};

}  // namespace quantlens
