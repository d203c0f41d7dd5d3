// `compare`: an existing quantized checkpoint against the full-precision model it came
// from, on the same tokens, as a resumable job in the store.
//
// What is measured (names as stored; the job's units are tensors and layers):
//  - per tensor (unit = GGUF name, type = the QUANT storage type, e.g. "Q4_K"):
//      bytes, bpw, n_params, and the weight metrics of analysis/measure/weight_metrics.h between
//      the FP weights as evaluated and the dequantized QUANT weights: w_rmse, w_max_abs, w_rel_fro,
//      w_cos, w_snr_db (capped at 999);
//  - overall (unit "(model)", type "quant"), one pass of both models over the chunks:
//      the KL statistics of analysis/measure/kld.h (kld_mean, kld_err, kld_median, kld_p90,
//      kld_p99, kld_max, top1_agree, rms_dp, ppl, ppl_base, ppl_delta, ln_ppl_ratio),
//      n_scored, weights_bpw;
//  - per layer (unit "token_embd", "blk.N", "output", type "quant"):
//      act_mse = mean over all tokens and channels of (h_q − h_fp)² of that block's output
//      (the embedding output for token_embd), act_cos = mean over tokens of the cosine
//      between h_q and h_fp (both absent for "output");
//      attribution by measurement: kld_all = KLD of the quantized model, kld_swapped = KLD
//      with that unit's tensors put back to full precision (all others stay quantized),
//      kld_reduction = kld_all − kld_swapped, kld_share = kld_reduction / kld_all.
//      The shares need not sum to 1: the errors of different layers interact.
// Conventions: the FP model is evaluated as llama.cpp's F16 base would be (HF weights
// rounded to F16, and optionally llama.cpp's CPU activation rounding, EngineOptions), the
// QUANT model is the FP engine with every tensor replaced by QUANT's dequantized values,
// so both run the FP model's architecture and configuration.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "analysis/measure/kld.h"

namespace quantlens {

namespace jobs {
class Store;
}
class Model;
class TensorSource;

struct CompareOptions {
    std::string fp, quant, text;
    int64_t ctx = 512;
    int64_t chunks = 0;         // 0 = every full chunk of the text
    int64_t batch = 4;          // chunks per forward pass
    bool f16_base = true;       // round HF FP weights to F16, as llama.cpp's F16 GGUF
    bool ggml_numerics = true;  // llama.cpp CPU activation rounding (engine.h)
    bool attribution = true;    // the per-layer swap-back measurements
    bool gpu = false;           // CUDA engines (F32 storage with ggml_numerics, else F16)

    nlohmann::json to_json() const;
    static CompareOptions from_json(const nlohmann::json& j);
};

// Throws Error naming the files and every problem found (up to a few of each kind) when
// QUANT is not a quantization of FP: a different architecture or size in its metadata,
// tensors FP has and QUANT lacks, tensors only QUANT has, different shapes.
void check_compatible(const Model& fp, const TensorSource& quant);

struct TensorComparison {
    std::string name, role, type;
    int64_t layer = -1;
    double bpw = 0, bytes = 0, n_params = 0;
    double w_rmse = 0, w_max_abs = 0, w_rel_fro = 0, w_cos = 1, w_snr_db = 0;
};

struct LayerComparison {
    std::string name;  // token_embd, blk.N, output
    int64_t layer = -1;
    bool has_act = false, has_attribution = false;
    double act_mse = 0, act_cos = 1;
    double kld_all = 0, kld_swapped = 0, kld_reduction = 0, kld_share = 0;
};

struct CompareResult {
    int64_t job_id = 0;
    CompareOptions options;
    int64_t n_chunks = 0, n_scored = 0;
    double weights_bpw = 0;
    KldStats kld;  // count, kld_*, same_top, rms_dp, ppl, ppl_base, ln_ppl_ratio
    std::vector<TensorComparison> tensors;  // in the FP model's order
    std::vector<LayerComparison> layers;    // token_embd, blk.0 .., output
};

// Creates the job (kind compare, queued) after checking the pair; returns its id.
int64_t create_compare_job(jobs::Store& store, const CompareOptions& options,
                           const std::string& command_line);
// Runs or resumes it until every item is measured (true) or a stop is requested (false).
bool run_compare_job(jobs::Store& store, int64_t job_id);
// Reads a (finished or partial) compare job back.
CompareResult load_compare_result(const jobs::Store& store, int64_t job_id);

// Tensors by w_rel_fro, largest first (the tensors with the largest weight error).
std::vector<TensorComparison> largest_weight_errors(const CompareResult& r, size_t top);

nlohmann::json compare_to_json(const CompareResult& r, size_t top);
std::string compare_table(const CompareResult& r, size_t top);

}  // namespace quantlens
