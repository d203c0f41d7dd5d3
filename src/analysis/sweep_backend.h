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
#pragma once

#include <cstdint>
#include <string>
#include <vector>

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
    double nll_sum = 0;             // Σ −log p(next token)
    double ref_nll_sum = 0;         // the reference's Σ −log p(next token)
    int64_t top1_same = 0;          // argmax agrees with the reference
    double dp_sq_sum = 0;           // Σ (p(next) − p_ref(next))²
    std::vector<double> layer_mse;  // [n_layers] mean (h − h_ref)² of each layer's output
    double final_mse = 0;           // the same at the final norm output (input of the head)
};

class SweepBackend {
  public:
    virtual ~SweepBackend() = default;
    virtual void prepare(const EvalChunks& chunks) = 0;
    // Overrides are installed on the backend's engine by the caller beforehand.
    virtual PerturbedStats evaluate(int64_t from_layer, bool recompute_embedding) = 0;
    virtual int64_t n_layers() const = 0;
};

}  // namespace quantlens
