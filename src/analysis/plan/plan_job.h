// From a finished (or partial) sweep job to a plan: builds the knapsack problem out of the
// job's measurements, solves it for a budget or by the jump-knee rule (plan.h), and turns the
// choice into a Recipe with predicted size, bpw and KLD.
//
// Sizes are whole-file sizes, exact: the GGUF header as the writer serializes it (metadata,
// tokenizer, tensor infos) + every tensor at its chosen type (fallbacks applied) and every
// tensor kept in float, each padded to the alignment as quantize writes them.
// Predicted KLD = Σ per-tensor ΔKLD × interaction factor, where the factor is the median
// over types of (measured KLD with every tensor at that type) / (Σ per-tensor ΔKLD at that
// type) — 1 when the sweep has no "(all)" items; or, after `plan --interactions N`
// (apply_interaction_fit), the chosen mix's KLD measured on the sweep's text, with the
// pairwise fit (analysis/plan/interactions.h) reported beside it.
// Tails: the predicted p99 (p99.9) KLD is Σ per-tensor p99 (p99.9) KLD × the same kind of
// factor fitted on the tails of the "(all)" items. Quantiles do not add, so this is an additive
// proxy: each item's tail is its Δ quantile (the full model's KLD is 0), and the factor absorbs
// how the tails of the mix combine, as measured on the uniform mixes (after
// `plan --interactions`, the measured mix's tails replace them). The objective
// (`plan --objective mean|p99`) is what the knapsack minimizes: Σ per-tensor ΔKLD (mean) or
// Σ per-tensor Δp99 KLD; every prediction is reported whichever drove the choice.
// Rounding (a `sweep --rounding-choice` job, analysis/write/rounding.h): the knapsack's options
// are (type × rounding) pairs; as every rounding of a type has the same bytes, each unit's
// option at a type is its measured rounding of least error (the base rounding on a tie), and
// the recipe records each tensor's rounding (formats/recipe.h). Units of a
// sweep's --experts (one expert's slices) are never chosen: a GGUF stores a layer's experts in one
// tensor of one type.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "analysis/plan/interactions.h"
#include "analysis/plan/plan.h"
#include "core/ggml_type.h"
#include "formats/recipe.h"

namespace quantlens {

class Model;
namespace jobs {
class Store;
}

// What every plan job reads (plan, plan --format gptq): the sweep job, the size budget and
// the metric it minimizes.
struct PlanTarget {
    int64_t job_id = 0;
    std::optional<uint64_t> target_bytes;
    std::optional<double> target_bpw;
    std::string metric = "kld";  // kld | ppl; plan also proxy (imatrix-weighted weight error)
    // An option per unit of the plan's space to take instead of the knapsack's (`plan
    // --refine`: the refined choice); refused over the budget.
    std::optional<std::vector<size_t>> choice;
};

// (sweep unit, measured item) pairs: units at their items, as a mix measures them.
using UnitItems = std::vector<std::pair<std::string, std::string>>;

// What a budget plan solved, for `plan --refine` (analysis/plan/refine.h): its units and
// options, the (sweep unit, item) pairs each option puts in a mix (a tied unit's members),
// the budget and the choice made.
struct PlanSpace {
    PlanProblem problem;
    std::vector<std::vector<UnitItems>> parts;  // [unit][option]
    uint64_t budget = 0;
    std::vector<size_t> choice;
};

// Whether a request's list of allowed options (types, formats; empty = all) takes `value`.
template <typename T>
bool allowed_by(const std::vector<T>& allowed, const T& value) {
    return allowed.empty() || std::find(allowed.begin(), allowed.end(), value) != allowed.end();
}

struct PlanRequest : PlanTarget {
    bool knee = false;               // plan_jump_knee (`plan --knee`) instead of a budget
    std::string objective = "mean";  // with metric kld: minimize Σ mean ΔKLD or Σ Δp99 KLD
    std::vector<GgmlType> types;     // empty = every measured type
    std::optional<GgmlType> min_type, max_type;          // by bits per weight
    std::vector<std::pair<std::string, GgmlType>> pins;  // regex → type
    // Regexes: the units each matches are grouped by their name with the layer number
    // replaced by '*' ("blk.*.ffn_down_exps.weight"), and each group takes one type, its
    // options being the types every member was measured at (sizes and errors summed).
    std::vector<std::string> ties;
    // On a `sweep --rounding-choice` job: plan over the base rounding's items only (the
    // sweep's imatrix-only or plain plan, for comparison), and write no per-tensor rounding.
    bool base_rounding_only = false;
};

struct PlanOutcome {
    Recipe recipe;
    std::vector<FrontierPoint> frontier;  // bytes, the objective predicted (raw sum × factor)
    double interaction_factor = 1.0;
    // The tails' factors (1 without "(all)" tails); the objective p99 scales by the first.
    double interaction_factor_p99 = 1.0, interaction_factor_p999 = 1.0;
    double raw_error = 0;  // Σ per-unit metric of the choice
    uint64_t header_bytes = 0;
    uint64_t unquantized_bytes = 0;
    int64_t n_params = 0;
    uint64_t grain_bytes = 1;
    std::vector<std::pair<std::string, std::string>> choices;  // unit → type, in unit order
    // (sweep unit, measured item) of every chosen unit, tied units' members one by one: what
    // the predicted KLD sums, and what `plan --interactions` measures in pairs.
    std::vector<std::pair<std::string, std::string>> chosen_items;
    // The prediction of the interaction factor (Σ × factor), kept when apply_interaction_fit
    // replaces the recipe's predicted KLD.
    double factor_predicted_kld = 0;
    PlanSpace space;  // a budget plan's (empty for --knee)
};

// A sweep job's measurements: unit → type → metric (jobs/metric_names.h) → value.
using SweepMeasurements =
    std::map<std::string, std::map<std::string, std::map<std::string, double>>>;
SweepMeasurements sweep_measurements(jobs::Store& store, int64_t job_id);

// A planned recipe's provenance (the model, its hash, the sweep job, the metric) and the size
// the plan chose: `bytes`, and its bits per weight over the model's n_params.
void set_plan_provenance(Recipe& recipe, const std::string& model, const std::string& model_hash,
                         const PlanTarget& request, uint64_t bytes, int64_t n_params);

// The interaction factor (above): the median over the types measured on the "(all)" unit of
// its `metric` (kld_mean, or a tail: kld_p99, kld_p999) / Σ over `units` of their `metric` at
// that type (negative ones as 0); nullopt when no type has both.
std::optional<double> interaction_factor(const SweepMeasurements& m,
                                         const std::vector<PlanUnit>& units,
                                         const std::string& metric = "kld_mean");
// A choice's predicted `metric`: Σ over its (unit, type) pairs of the measured value (negative
// ones as 0), in that order, × `factor`; NaN when any pair was not measured.
double predicted_kld(const SweepMeasurements& m,
                     const std::vector<std::pair<std::string, std::string>>& chosen, double factor,
                     const std::string& metric = "kld_mean");

// The chosen mix measured as one sweep item (analysis/studies/interactions.h).
struct MeasuredMix {
    int64_t n_tokens = 0;  // over the first n_tokens of the sweep's text
    double kld_mean = 0, kld_p99 = 0, kld_p999 = 0;
    double sweep_tokens_kld_mean = 0;  // the same mix over the sweep's own tokens
};
// `plan --interactions N`: the recipe's predicted KLD (mean, and the tails where measured)
// becomes the measured mix's instead of Σ × interaction factor; a note gives the raw Σ, the
// factor's figure, the pairwise fit (Σ d_i + cross terms ± its standard error) and the mix.
// The frontier keeps the factor. Refuses a fit of another choice (a raw sum that is not the
// plan's) and a mix whose mean KLD is not a positive number.
void apply_interaction_fit(PlanOutcome& out, const InteractionFit& fit, const MeasuredMix& mix);

// "5373408", "5.37MB" (10^6), "5.1MiB", "4.2GB", "4GiB", "900kB" → bytes.
uint64_t parse_size(const std::string& text);

PlanOutcome plan_from_job(jobs::Store& store, const PlanRequest& request);

// The GGUF header bytes quantize writes for this model (metadata + tensor infos, padded to
// the alignment): exactly the written file's data offset.
uint64_t gguf_header_bytes(const Model& model);
// A tensor's bytes in the data section at `type` (the fallback for rows its blocks do not
// divide applied), padded to the alignment as the writer pads it.
uint64_t gguf_tensor_file_bytes(const std::vector<int64_t>& ne, GgmlType type);

}  // namespace quantlens
