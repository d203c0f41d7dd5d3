// Activation statistics collected from the engine's hook while the full-precision model runs
// over calibration text: for the input of every linear layer (per expert for stacked MoE
// weights), the importance matrix llama.cpp's llama-imatrix computes plus distribution
// statistics, and per layer the hidden-state outlier ratio.
//
// Definitions (sums in double; n = tokens that reached the matrix, x = one input value):
//   importance_j      = Σ x_j² / n                      (llama.cpp's imatrix value, per matrix)
//   mean_abs_j        = Σ |x_j| / n,   max_abs_j = max |x_j|   (over all matrices of a tensor)
//   mean, variance    = of every value of the tensor's input (population variance)
//   excess_kurtosis   = m4 / m2² − 3 over every value (central moments); per channel the same
//                       over that channel's values, summarized as median and max
//   frac_beyond_6sigma= fraction of values with |x − mean| > 6σ, where mean and σ are those
//                       of every value seen up to and including the current forward batch
//                       (the exact global σ would need a second pass over all activations)
//   outlier channels  = channels whose max_abs_j > 6 × mean over channels of max_abs
//   layer ratio       = max |h| / mean |h| of the layer's output hidden state (all tokens)
// Which inputs count follows llama-imatrix: weights named blk.* (the output head is left out
// unless include_output), every token row of every forward batch; stacked experts count the
// tokens routed to each expert.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "engine/engine.h"
#include "formats/imatrix.h"

namespace quantlens {

// An engine hook for the lifetime of this object, cleared on every way out (a collector must
// not outlive the pass it watches).
class ScopedEngineHook {
  public:
    ScopedEngineHook(Engine& engine, EngineHook hook) : engine_(engine) {
        engine_.set_hook(std::move(hook));
    }
    ~ScopedEngineHook() { engine_.clear_hook(); }
    ScopedEngineHook(const ScopedEngineHook&) = delete;
    ScopedEngineHook& operator=(const ScopedEngineHook&) = delete;

  private:
    Engine& engine_;
};

// Running per-channel sums of one matrix's input.
struct ChannelMoments {
    int64_t n_cols = 0;
    int64_t n_rows = 0;    // tokens seen
    int64_t n_beyond = 0;  // values beyond 6σ (see the header)
    std::vector<double> s1, s2, s3, s4, sabs;
    std::vector<float> max_abs;

    explicit ChannelMoments(int64_t cols = 0);
    // x: rows × n_cols, row-major. Channels are split across the thread pool.
    void add(const float* x, int64_t rows);
    // Tensor-wide mean and population σ of every value so far (0, 0 when empty).
    std::pair<double, double> mean_sigma() const;
};

struct TensorActivationStats {
    std::string name;  // GGUF weight name
    int layer = -1;
    int64_t n_cols = 0, n_mat = 1;
    std::vector<int64_t> tokens;           // per matrix
    std::vector<float> importance;         // [n_mat][n_cols], Σx²/n per matrix (0 where n = 0)
    std::vector<float> mean_abs, max_abs;  // per channel, over all matrices
    double mean = 0, variance = 0, excess_kurtosis = 0, frac_beyond_6sigma = 0;
    double channel_kurtosis_median = 0, channel_kurtosis_max = 0;
    double max_abs_all = 0;
    std::vector<int64_t> outlier_channels;  // ascending
    int64_t total_tokens() const;
};

struct LayerHiddenStats {
    int layer = 0;
    int64_t n_tokens = 0;
    double max_abs = 0, mean_abs = 0;
    int64_t max_channel = -1;  // channel of max |h|
    double ratio() const { return mean_abs > 0 ? max_abs / mean_abs : 0; }
};

class ActivationCollector {
  public:
    // n_experts: matrices of a stacked expert weight (the model's expert count; experts no
    // token reached are reported with 0 tokens).
    explicit ActivationCollector(int64_t n_experts = 0, bool include_output = false)
        : n_experts_(n_experts), include_output_(include_output) {}

    // The hook to install with Engine::set_hook; it refers to this collector.
    EngineHook hook();
    void on_event(const HookEvent& event);
    // A LinearInput event whose input also feeds the weights `also` (q, k and v; gate and
    // up): measured once, the statistics copied to each (they always see identical inputs).
    void on_shared_input(const HookEvent& event, std::span<const std::string> also);

    // Keep sample input rows for later error measurements (AWQ): every `stride`-th row a
    // matrix receives, up to max_rows per matrix.
    void set_capture(int64_t max_rows, int64_t stride = 1);
    // Captured rows of (tensor, expert) as [rows, n_cols]; empty when none.
    const std::vector<float>& captured(const std::string& tensor, int expert = -1) const;

    // Sums reduced elsewhere (the GPU's, engine/cuda/cuda_stats.h) for the input of the plain
    // weight `tensor`, as on_event would have gathered them from the same rows; a tensor
    // on_event would not keep is skipped, one that already has sums is refused.
    // `expert`: the stacked experts' matrix (-1: a plain weight).
    void adopt_moments(const std::string& tensor, int layer, ChannelMoments moments,
                       int expert = -1);
    // A layer's hidden-state statistics reduced elsewhere (replaces the layer's entry).
    void adopt_layer(const LayerHiddenStats& stats);

    bool empty() const { return mats_.empty(); }
    std::vector<TensorActivationStats> tensor_stats() const;  // by name
    std::vector<LayerHiddenStats> layer_stats() const;        // by layer
    // The importance matrix as the imatrix writers take it (means, counts = tokens).
    std::vector<ImatrixEntry> imatrix_entries() const;

  private:
    struct Matrix {
        ChannelMoments moments;
        std::vector<float> sample;
        int64_t rows_seen = 0;
    };
    struct Tensor {
        int layer = -1;
        int64_t n_cols = 0;
        std::map<int, Matrix> mats;  // expert (-1 for a plain weight) → sums
    };
    int64_t n_experts_;
    bool include_output_;
    int64_t capture_rows_ = 0, capture_stride_ = 1;
    std::map<std::string, Tensor> mats_;
    std::map<int, LayerHiddenStats> layers_;
};

// Excess kurtosis from raw sums of n values (0 when the variance is 0).
double excess_kurtosis_from_sums(double n, double s1, double s2, double s3, double s4);

}  // namespace quantlens
