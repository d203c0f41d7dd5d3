// The sensitivity sweep: for every unit (a tensor, a layer's tensors, or a tensor class) and
// every type, fake-quantize that unit only and measure the model against its full-precision
// self on the same tokens. A resumable job in the store: one work item per (unit, type),
// each committed with all of its metrics in one transaction.
//
// Metrics per item (names as stored):
//   kld_mean, kld_max        mean / max KL(p_ref ‖ p) over scored tokens (nats)
//   ppl, ppl_base, ppl_delta perplexity with the unit quantized, of the reference, difference
//   ln_ppl_ratio             mean NLL difference = ln(ppl / ppl_base)
//   top1_agree               fraction of scored tokens whose argmax is unchanged
//   rms_dp                   sqrt(mean (p(next) − p_ref(next))²)
//   act_mse                  mean squared difference of the last layer's output (all tokens)
//   act_mse_L<l>             the same after layer l (0 for layers before the unit)
//   w_rmse, w_max_abs, w_mean_abs, w_rel_fro, w_cos, w_snr_db (capped at 999),
//   w_imat_err, w_imat_rel   weight metrics (analysis/measure/weight_metrics.h) over the unit
//   bytes, bpw               storage of the unit at that type (after fallbacks); in a
//                            placement sweep, of every quantizable tensor (the whole model)
//   fallbacks                tensors of the unit that used llama.cpp's fallback type
//   seconds                  time the item took
//   route_tokens, route_share  expert units only (sweep --experts): tokens routed to the
//                            expert in the reference pass, and their share of the layer's
//                            routed slots (analysis/sweep/expert_units.h)
// The special unit "(all)" applies the type to every quantizable tensor at once: its KLD,
// beside the sum of the per-tensor ΔKLD, says how additive the errors are.
// Granularity "placement" (analysis/sweep/placement.h) measures presets instead: its units are the
// tensors raised to the item's type while every other quantizable tensor is at the base type.
// With `experts` (sweep --experts), per-expert units "blk.L.expert.E" are measured too, with
// each expert's routing share (analysis/sweep/expert_units.h).
// With `rounding_choice` (sweep --rounding-choice), the bare types are measured at the base
// rounding (imatrix with --imatrix, else plain; GPTQ is then not applied to them) and each
// (unit, type) has alternative items "<type>+plain" / "<type>+gptq" (analysis/write/rounding.h).
// After the base items, the weight proxy (rounding.h: output error under the --gptq Hessian,
// or under the imatrix) of every alternative is computed, and only those it says can win,
// most promising first, are evaluated, at most rounding_share × the base items
// (analysis/sweep/rounding_choice.h). The others are recorded with their proxies and
// rounding_measured = 0. The decision (artifact "rounding_choice") and the extra cost against
// the base sweep's
// (artifact "rounding_cost": reference pass + base items vs Hessians + proxies + alternative
// items, in seconds) are stored in the job and printed by the summary.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <optional>

#include <nlohmann/json_fwd.hpp>

#include "core/ggml_type.h"
#include "core/gptq_format.h"

namespace quantlens {

namespace jobs {
class Store;
}
class Model;
class Engine;
class SweepBackend;  // engine/sweep_backend.h

struct SweepOptions {
    std::string model;
    std::string eval_text;
    int64_t n_tokens = 8192;  // evaluation tokens (rounded down to whole chunks)
    int64_t ctx = 512;
    std::vector<GgmlType> types;
    std::string granularity = "tensor";  // tensor | layer | class | placement
    // Placement sweeps only: the type of every tensor a variant does not raise, and the
    // layer counts N of the first/last/middle-N variants (empty: default_placement_n).
    std::optional<GgmlType> base_type;
    std::vector<int> placement_n;
    std::string imatrix;
    bool prefix_cache = true;  // false: recompute every item from the embedding (for timing)
    bool uniform = true;       // also measure "(all)" per type
    bool f16_weights = true;   // round weights through F16 first, like llama.cpp's converter
    // Emulate llama.cpp's CPU arithmetic (engine.h): each quantized tensor's matmul input is
    // rounded to 8-bit blocks as ggml does for its type, so ΔKLD includes that rounding, as
    // verify's measured KLD does. Off: pure f32 compute (the measurement of the weights alone).
    bool ggml_numerics = false;
    double budget_seconds =
        0;             // > 0: measure the proxy for all, then KLD by proxy rank until out of time
    bool gpu = false;  // evaluate on the CUDA backend (needs a -DQUANTLENS_CUDA=ON build)
    // GPTQ rounding (analysis/write/gptq_rounding.h) against Hessians of this calibration text, for
    // the tensors and types it covers: ΔKLD then measures what `quantize --gptq` writes.
    std::string gptq_text;
    int64_t gptq_chunks = 64;
    // The content hash of gptq_text when the job was made (create_sweep_job), so a resume
    // refuses a changed text; empty in options not yet made into a job.
    std::string gptq_hash;
    // A GPTQ-format sweep (`--types gptq`; `types` then empty): GPTQ's own formats
    // (core/gptq_format.h) over the Linears a GPTQ checkpoint quantizes, in the units of
    // analysis/write/gptq_formats.h; with gptq_text, GPTQ error feedback, in act order (desc_act)
    // when gptq_act_order.
    std::vector<GptqFormat> gptq_formats;
    bool gptq_act_order = false;
    // Per-expert units besides the granularity's (analysis/sweep/expert_units.h): every
    // expert of every MoE layer, or `expert_sample` of them per layer when > 0.
    bool experts = false;
    int64_t expert_sample = 0;
    // Rounding as a per-item choice (above); needs imatrix and/or gptq_text.
    bool rounding_choice = false;
    double rounding_margin = 0.05;
    double rounding_share = 0.5;

    // A job's parameters: to_json() is what the store keeps, from_json() the one place that
    // reads them back (the sweep, its summary and placement study, resume, MPI workers).
    nlohmann::json to_json() const;
    static SweepOptions from_json(const nlohmann::json& j);
};

struct SweepUnit {
    std::string name;
    int layer = -1;  // -1 for units spanning layers
    std::string role;
    std::vector<std::string> tensors;
    int64_t n_params = 0;
};

std::vector<SweepUnit> build_sweep_units(const Model& model, const std::string& granularity);
// The units a job with these options measures (placement variants for granularity placement).
std::vector<SweepUnit> build_sweep_units(const Model& model, const SweepOptions& options);

// Default sweep types (the eight): Q8_0, Q6_K, Q5_K, Q4_K, Q3_K, Q2_K, IQ4_XS, IQ3_S.
std::vector<GgmlType> default_sweep_types();

// The "model_info" artifact of a sweep job (path, arch, n_params, every tensor's name, shape,
// role and whether it is quantized), which plan reads instead of opening the sweep's code.
nlohmann::json model_info_json(const Model& model);

// Creates the job (queued) with its units and work items; returns its id.
int64_t create_sweep_job(jobs::Store& store, const SweepOptions& options,
                         const std::string& command_line);
// Runs (or resumes) the job until every item is measured or a stop is requested.
// Returns true when complete.
bool run_sweep(jobs::Store& store, int64_t job_id);

// The measuring half of a sweep on its own, for drivers that schedule the work items
// themselves (MPI workers, analysis/mpi): opens the model, runs the reference pass once, then
// measures any item of a job with these options. run_sweep() measures through the same code.
// Items are independent: a result depends on (options, unit, type, thread count) only, never
// on which items this measurer did before (overrides are cleared after every item and the
// prefix cache is read-only after prepare()).
class SweepMeasurer {
  public:
    explicit SweepMeasurer(const SweepOptions& options);  // opens the model and the imatrix
    ~SweepMeasurer();
    SweepMeasurer(const SweepMeasurer&) = delete;
    SweepMeasurer& operator=(const SweepMeasurer&) = delete;

    // What Store::check_inputs compares: the model's content hash and the text's hash.
    std::string model_hash() const;
    std::string text_hash() const;
    // The reference pass; returns the "reference" artifact's JSON text (chunks, seconds).
    std::string prepare();
    // One work item (unit "(all)" included); metrics as run_sweep records them.
    std::map<std::string, double> measure(const std::string& unit, const std::string& type);
    // A mix of units at their own types (the interaction study, analysis/studies/
    // interactions.h, plan --refine): each (unit, item) puts the unit's tensors at the item's
    // type ("Q4_K", or "Q4_K+plain" on a --rounding-choice job, rounded as that item was) or,
    // on a GPTQ-format job, at the item's format ("gptq4g128a", rounded as the sweep rounds),
    // every other tensor at full precision; metrics as an item's. Refuses "(all)", expert
    // units, a unit listed twice, and placement jobs, by name.
    std::map<std::string, double> measure_mix(
        const std::vector<std::pair<std::string, std::string>>& unit_items);

    struct Impl;

  private:
    std::unique_ptr<Impl> impl_;
};

// Spearman rank correlation (average ranks for ties); NaN if fewer than 3 pairs.
double spearman(const std::vector<double>& a, const std::vector<double>& b);

// Text summary of a finished sweep: per type, Σ per-unit ΔKLD vs the measured "(all)" KLD,
// and the most sensitive units; for a placement sweep, its size vs KLD/PPL table.
std::string sweep_summary(jobs::Store& store, int64_t job_id);

}  // namespace quantlens
