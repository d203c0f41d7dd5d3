// The layer-placement study, `quantlens sweep --placement`: the presets people build by hand
// ("Q4_K everywhere but the first two layers at Q6_K", "attention at Q8_0"), measured.
//
// A placement sweep is a sweep job with granularity "placement" and a base type. Each unit is
// a variant naming the tensors it raises; an item (variant, T) measures the model with those
// tensors at T and every other quantizable tensor at the base type, through the same
// measuring path as every sweep item (analysis/sweep/sweep.cpp), against the full-precision model.
//
// Variants for a model of L layers and each N of --placement-n (1 ≤ N < L):
//   (base)      nothing raised: the uniform base-type model (measured once, at the base type)
//   first-N     every quantizable tensor of layers 0 .. N-1
//   last-N      … of layers L-N .. L-1
//   middle-N    … of layers (L-N)/2 .. (L-N)/2+N-1
//   alternate   … of the even layers 0, 2, 4, …
//   attn-only   attn_q/k/v/output of every layer
//   ffn-only    the feed-forward tensors of every layer (gate/up/down, router, experts)
//   output      output.weight (token_embd.weight when the head is tied to it)
//   embed       token_embd.weight (absent when the head is tied to it: that is `output`)
// plus, unless --no-uniform, "(all)" at each T (the whole model at T): the table's upper end.
//
// attn-only, ffn-only, output and embed partition the model: their gains, beside "(all)", say
// where the base type's error comes from.
//
// token_embd and output stay at the base type in every variant but `output` and `embed`.
// llama.cpp's presets give output Q6_K (and IQ presets treat token_embd specially); holding them at
// the base keeps (base) identical to the uniform "(all)" item of an ordinary sweep, so every
// difference in the table comes from the placement alone, and the `output` and `embed`
// variants measure what llama.cpp's special cases buy on their own.
//
// Every item changes token_embd, so every item recomputes the model from the embedding: the
// prefix cache cannot help here (an item costs one full forward over the evaluation tokens).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "analysis/sweep/sweep.h"

namespace quantlens {

namespace jobs {
class Store;
}
class Model;

inline constexpr const char* kPlacementBaseUnit = "(base)";

// {1, L/8, L/4}, each at least 1 and below L, without repeats.
std::vector<int> default_placement_n(int n_layers);

// The variants of the study for this model; throws Error naming --placement-n when an N is
// outside 1 .. L-1.
std::vector<SweepUnit> build_placement_units(const Model& model, const std::vector<int>& ns);

// One row of the table: a measured item with the size of the whole model.
struct PlacementRow {
    std::string variant;
    std::string raised_type;  // the base type for (base)
    double model_bytes = 0;   // quantized tensors at their types + the F32 tensors
    double bpw = 0;           // 8 · model_bytes / all parameters
    double kld_mean = 0, ppl = 0, ppl_delta = 0, top1_agree = 0;
    double kld_p99 = 0, kld_p999 = 0;  // NaN when the sweep recorded no tails
    bool pareto = false;               // no other row is at most as large and lower in KLD
};

// The measured rows of a placement job, sorted by size then KLD; ppl_base receives the
// full-precision perplexity when a row has it.
std::vector<PlacementRow> placement_rows(jobs::Store& store, int64_t job_id,
                                         double* ppl_base = nullptr);
// Text table (variant, raised type, size MB, bpw, KLD, PPL, ΔPPL, top-1, KLD saved per extra
// MB over (base), Pareto mark) with a header naming the base type.
std::string placement_summary(jobs::Store& store, int64_t job_id);
// The rows as a JSON array of objects (the table's columns, unrounded).
nlohmann::json placement_json(jobs::Store& store, int64_t job_id);

}  // namespace quantlens
