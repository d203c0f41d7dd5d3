// GPU reductions of the CUDA engine's activation taps (cuda_engine.h, ActivationTap), so that
// calibration and GPTQ's Hessians copy no tapped activation to the host. A TapReducer keeps,
// per key (the first GGUF weight name a tapped input feeds), on the device:
//
//  - Channel moments of a LinearInput tap, exactly the sums the CPU's ChannelMoments keeps
//    (analysis/measure/activation_stats.h), x = one input value widened to double:
//      s1..s4_j = Σ x_j^k, sabs_j = Σ |x_j|  (double),  max_abs_j = max |x_j|  (float),
//      n_rows, and n_beyond = values with |x − μ| > 6σ, where μ and σ (population) are those
//      of every value of this key seen up to and including the current tap. Sums are formed
//      per (row chunk, channel) in row order, the chunks added in order: deterministic, equal
//      to the CPU's serial sums up to the order of double additions (≈1e-15 relative).
//  - Layer hidden statistics of a LayerOutput tap, as the CPU's LayerHiddenStats:
//      Σ|h| (double, fixed-order tree), max |h| and the channel of its first occurrence
//      (row-major; a later tap replaces it only when strictly greater), tokens.
//  - Hessians H = Σ xᵀx of a LinearInput tap: one cuBLAS GEMM per tap with the tap's own
//    element type in and F32 products out (16-bit products are exact in F32; the sum over the
//    tap's rows is F32), added into an F64 accumulator on the device (upper triangle, i ≤ j in
//    row-major terms; the lower one is not maintained). The accumulators stay on the device
//    for the whole run because per-tap downloads of n² floats would cost more than the GEMM
//    (an 8B model's down-projection input is 14336² floats, 0.8 GB, per tap); when the model's
//    inputs do not fit at once the caller runs the text once per group of inputs that does
//    (hessian_bytes, device_free_bytes), which costs extra forward passes but never precision.
//
// Every reduction is deterministic: a fixed grid and reduction order, no floating-point atomics
// (the only atomics are 64-bit integer counts and maxima). Work goes to the default stream,
// ordered with the engine's kernels; results are read back by the getters (which synchronize).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/cuda/cuda_engine.h"

namespace quantlens::cuda {

// Host copy of one key's channel moments (the fields of ChannelMoments).
struct ChannelSums {
    int64_t n_cols = 0, n_rows = 0, n_beyond = 0;
    std::vector<double> s1, s2, s3, s4, sabs;  // [n_cols]
    std::vector<float> max_abs;                // [n_cols]
};

// Host copy of one layer's hidden-state statistics (the fields of LayerHiddenStats).
struct HiddenSums {
    int64_t n_tokens = 0, n_cols = 0;
    double sum_abs = 0;
    float max_abs = 0;
    int64_t max_channel = -1;  // -1 while no value exceeded 0
    double mean_abs() const {
        return n_tokens > 0 ? sum_abs / (static_cast<double>(n_tokens) * n_cols) : 0;
    }
};

class TapReducer {
  public:
    // `storage`: the engine's storage precision, how taps with f32 == false are read.
    explicit TapReducer(Precision storage);
    ~TapReducer();
    TapReducer(const TapReducer&) = delete;
    TapReducer& operator=(const TapReducer&) = delete;

    // A LinearInput tap into the channel moments of `key` (created at its first tap; every
    // later tap must have as many columns).
    void add_moments(const std::string& key, const ActivationTap& tap);
    // A LayerOutput tap into the hidden statistics of its layer.
    void add_hidden(const ActivationTap& tap);
    // A LinearInput tap into the Hessian of `key` (hessian_bytes(cols) of device memory from
    // its first tap until drop_hessians).
    void add_hessian(const std::string& key, const ActivationTap& tap);

    std::vector<std::string> moment_keys() const;  // sorted
    ChannelSums moments(const std::string& key) const;
    std::vector<int> hidden_layers() const;  // ascending
    HiddenSums hidden(int layer) const;
    std::vector<std::string> hessian_keys() const;  // sorted
    // Σ xᵀx of `key` as n_cols × n_cols doubles, row-major, upper triangle (i ≤ j) valid;
    // `tokens` receives the rows summed.
    std::vector<double> hessian(const std::string& key, int64_t* tokens = nullptr) const;
    // Frees every Hessian accumulator (the next group of inputs starts from nothing).
    void drop_hessians();

    // Device bytes of one Hessian accumulator of n_cols columns.
    static int64_t hessian_bytes(int64_t n_cols);

    struct Impl;

  private:
    std::unique_ptr<Impl> impl_;
};

// Free memory on the current device, in bytes.
int64_t device_free_bytes();

// Runs token batches through the embedding, every layer and the head, so that every tap of
// `engine` fires, the head's input included (layer −1); the logits are discarded. Its device
// buffers (tokens, hidden states, logits) are kept from one batch to the next.
class TapForward {
  public:
    explicit TapForward(CudaEngine& engine);
    ~TapForward();
    TapForward(const TapForward&) = delete;
    TapForward& operator=(const TapForward&) = delete;
    // tokens[B*T], each in [0, vocab); B·T ≤ the engine's max_tokens.
    void run(const std::vector<int32_t>& tokens, int64_t B, int64_t T);

  private:
    struct Buffers;
    CudaEngine& engine_;
    std::unique_ptr<Buffers> buffers_;
};

}  // namespace quantlens::cuda
