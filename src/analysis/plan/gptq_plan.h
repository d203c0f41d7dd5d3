// `plan --format gptq`: one GPTQ format (core/gptq_format.h) per unit of a GPTQ-format
// sweep (`sweep --types gptq`), by the same exact knapsack as plan_job.h, into a GPTQ recipe
// (formats/recipe.h) that `--export-gptq` turns into a quantization_config and
// `verify --format gptq` measures.
//
// Sizes are a GPTQ checkpoint's tensor bytes: each module as the checkpoint stores it
// (qweight, qzeros, scales, g_idx: gptq_module_bytes) + every other tensor in 16 bits
// (gptq_unquantized_bytes); the safetensors header is not counted. Bits per weight are over
// all parameters. Predicted KLD = Σ per-unit ΔKLD × the interaction factor fitted on the
// uniform "(all)" items, as for ggml plans.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "analysis/plan/plan.h"
#include "analysis/plan/plan_job.h"
#include "core/gptq_format.h"
#include "formats/recipe.h"

namespace quantlens {

namespace jobs {
class Store;
}

struct GptqPlanRequest : PlanTarget {
    // A format name: the budget is the size of the uniform checkpoint at that format.
    std::optional<GptqFormat> target_like;
    std::vector<GptqFormat> formats;  // empty = every measured format
};

struct GptqPlanOutcome {
    Recipe recipe;
    std::vector<FrontierPoint> frontier;
    double interaction_factor = 1.0;
    double raw_error = 0;
    uint64_t fixed_bytes = 0;  // tensors kept in 16 bits
    int64_t n_params = 0;
    std::vector<std::pair<std::string, std::string>> choices;  // unit → format name
    // Measured uniform checkpoints: format name → (bytes, measured KLD of "(all)").
    std::map<std::string, std::pair<uint64_t, double>> uniform;
    PlanSpace space;  // for `plan --refine`
};

GptqPlanOutcome plan_gptq_from_job(jobs::Store& store, const GptqPlanRequest& request);

}  // namespace quantlens
