// Calibration: the full-precision model run over a calibration text with llama-imatrix's
// chunking, collecting the importance matrix and activation statistics
// (activation_stats.h), written as a llama.cpp imatrix and stored as a job artifact.
//
// Chunking (as llama-imatrix): the text is tokenized with BOS prepended, cut into
// ⌊n_tokens / n_ctx⌋ non-overlapping chunks (at most max_chunks), the first token of each
// chunk replaced by BOS; every token of every chunk is an input row (no token is skipped,
// the BOS rows included). llama.cpp refuses texts under 2·n_ctx tokens; we need one chunk.
//
// Artifact "calibration" (JSON, compact; what the report draws):
//   { "model", "text", "n_ctx", "n_chunks", "n_tokens", "seconds", "tokens_per_second",
//     "tensors": [ { "name", "layer", "role", "n_cols", "n_mat", "tokens": [per matrix],
//                    "channel_importance": [per channel, mean over matrices of Σx²/n],
//                    "mean_abs": [...], "max_abs": [...], "mean", "variance",
//                    "kurtosis" (excess, all values), "channel_kurtosis_median",
//                    "channel_kurtosis_max", "frac_beyond_6sigma", "max_abs_all",
//                    "outlier_channels": [...],
//                    "weight_hist": { "counts": [64], "edges": [65], "mean", "std", "n",
//                                     "frac_beyond_3sigma", "excess_kurtosis" } } ],
//     "layers": [ { "layer", "max_abs", "mean_abs", "max_mean_ratio", "max_channel" } ] }
// Per-channel arrays are rounded to 4 significant digits to keep the artifact small.
// "weight_hist" (when CalibrationResult::weights is filled) is over the weight as the engine
// holds it (F16-rounded with --as-f16): 64 equal bins from min to max, μ and σ (population),
// for every quantizable tensor; a quantizable tensor whose input is not calibrated
// (token_embd, output) gets an entry of its own with name, layer, role and weight_hist only.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "analysis/measure/activation_stats.h"
#include "analysis/studies/weight_diagnostics.h"
#include "engine/sweep_backend.h"
#include "formats/imatrix.h"

namespace quantlens {

class Engine;
class Imatrix;
class Model;

namespace jobs {
class Store;
}

struct CalibrateOptions {
    int64_t n_ctx = 512;
    int64_t max_chunks = 0;                        // 0 = every full chunk
    int64_t batch = 4;                             // chunks per forward pass
    bool progress = true;                          // terminal progress bar with tokens/s
    int64_t capture_rows = 0, capture_stride = 1;  // sample rows kept (ActivationCollector)
};

struct CalibrationResult {
    std::string dataset;  // the text's path
    int64_t n_ctx = 0, n_chunks = 0, n_tokens = 0;
    double seconds = 0, tokens_per_second = 0;
    std::vector<TensorActivationStats> tensors;
    std::vector<LayerHiddenStats> layers;
    std::vector<ImatrixEntry> imatrix;       // means, counts = tokens per matrix
    std::vector<WeightDiagnostics> weights;  // weight_histograms(); empty = not computed
};

// Called after each forward batch with (chunks done, chunks total); return false to stop
// early (the result then covers the chunks done).
using CalibrateObserver = std::function<bool(int64_t done, int64_t total)>;

// Runs `engine` (its hook is replaced for the duration) over `chunks`. `collector` receives
// every event and is left holding the sums (for captured rows); pass nullptr for a private one.
CalibrationResult run_calibration(Engine& engine, const EvalChunks& chunks,
                                  const std::string& dataset, const CalibrateOptions& options,
                                  const CalibrateObserver& observer = {},
                                  ActivationCollector* collector = nullptr);

// Tokenizes the text file and runs run_calibration. Throws Error for an empty text or one
// shorter than one chunk (naming the file).
CalibrationResult calibrate_text(Engine& engine, const std::string& text_path,
                                 const CalibrateOptions& options,
                                 const CalibrateObserver& observer = {},
                                 ActivationCollector* collector = nullptr);

// The same on the GPU (CUDA build, dense models): the CUDA engine with F16 weights runs the
// batches (options.batch chunks per pass) and every tapped matmul input and layer output is
// downloaded into an ActivationCollector, so the statistics are the CPU's computed over the
// GPU's F16-rounded activations. Throws Error naming the model without CUDA or for a mixture
// of experts (routed inputs are not tapped).
CalibrationResult calibrate_text_gpu(const Model& model, const std::string& text_path,
                                     const CalibrateOptions& options,
                                     const CalibrateObserver& observer = {});

// Histogram and moments (diagnose_weight without group maps) of every quantizable tensor of
// the engine's model, in model order; tensors run in parallel over the engine's own f32
// copies, so nothing is read again.
std::vector<WeightDiagnostics> weight_histograms(const Engine& engine);
// The same read tensor by tensor from the model (rounded through F16 when f16_weights), for
// runs without a CPU engine (calibrate --gpu).
std::vector<WeightDiagnostics> weight_histograms(const Model& model, bool f16_weights);

ImatrixWriteInfo imatrix_write_info(const CalibrationResult& result);
nlohmann::json calibration_json(const CalibrationResult& result, const std::string& model);

// Every entry must name a tensor of the model taking inputs of its row length, with one
// matrix per expert: throws Error naming the imatrix file, the tensor and what disagrees.
void check_imatrix_for_model(const Imatrix& imatrix, const Model& model);

}  // namespace quantlens
