// Recipes: which ggml type each tensor gets, with the provenance needed to trust it.
//
// JSON (and the same keys in YAML):
//   { "format": "quantlens-recipe", "version": 1,
//     "model": "path", "model_hash": "xxh64 hex", "job_id": 12, "metric": "kld",
//     "budget": {"kind": "size"|"bpw"|"knee", "value": 5373408},
//     "objective": "mean",                                   // or "p99" (plan --objective)
//     "predicted": {"size_bytes": 5373408, "bpw": 5.12, "kld": 0.0116,
//                   "kld_p99": 0.061, "kld_p999": 0.19},     // tails only when the sweep had them
//     "default_type": "Q4_K",
//     "tensors": {"blk.0.attn_q.weight": "Q5_K", ...},       // GGUF names
//     "rounding": {"blk.0.attn_q.weight": "gptq", "output.weight": "plain", ...},  // v2
//     "notes": ["blk.0.ffn_down.weight: Q4_K → Q5_0 (row 896 not a multiple of 256)"],
//     "gptq": {"desc_act": false, "tensors": {"blk.0.attn_q.weight": "gptq4g128", ...}} }
// Versions: 1 has no "rounding"; 2 adds it (written only when the map is not empty, so a
// recipe without per-tensor rounding stays readable by older quantlens). A version above 2
// is refused. "rounding" says how quantize rounds each named tensor (Rounding below); a
// tensor it does not name follows quantize's --imatrix/--gptq switches, as in version 1.
// A GPTQ recipe (`plan --format gptq`) has "gptq" and an empty "tensors": its formats are
// GPTQ's own (core/gptq_format.h), exported by formats/gptq_config.h, never written as GGUF.
// Exports: llama.cpp `--tensor-type` arguments and `--tensor-type-file` text with anchored,
// one-per-tensor patterns (so first-match and last-match versions of llama-quantize agree),
// a llama-quantize command line; the GPTQ quantization_config is formats/gptq_config.h.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/ggml_type.h"
#include "core/gptq_format.h"
#include "core/output_file.h"

namespace quantlens {

// How a tensor's weights are rounded to its type's grid (the bytes' format never changes):
//   plain    the type's quantizer without importance weights;
//   imatrix  the importance-weighted quantizer (quantize --imatrix; a tensor the imatrix has
//            no entry for is rounded plainly, as llama-quantize does);
//   gptq     GPTQ error feedback against the --gptq input Hessians (analysis/write/
//            gptq_rounding.h), block parameters importance-weighted when an imatrix is given.
enum class Rounding { plain, imatrix, gptq };
inline constexpr int kRecipeVersion = 2;  // the newest schema this build reads and writes
const char* rounding_name(Rounding rounding);
std::optional<Rounding> rounding_from_name(std::string_view name);

struct Recipe {
    std::string model;
    std::string model_hash;
    int64_t job_id = 0;
    std::string metric = "kld";
    std::string budget_kind;  // "size", "bpw", "knee", "preset", "manual"
    double budget_value = 0;
    uint64_t predicted_size_bytes = 0;
    double predicted_bpw = 0;
    double predicted_kld = 0;
    // Predicted tails of per-token KLD (plan_job.h: Σ per-tensor Δ quantile × its interaction
    // factor, an additive proxy); NaN when the sweep recorded no tails.
    double predicted_kld_p99 = std::numeric_limits<double>::quiet_NaN();
    double predicted_kld_p999 = std::numeric_limits<double>::quiet_NaN();
    std::string objective = "mean";  // what the knapsack minimized: "mean" or "p99" KLD
    GgmlType default_type = GgmlType::Q4_K;
    std::map<std::string, GgmlType> tensors;  // GGUF name → type
    // GGUF name → rounding (plan on a `sweep --rounding-choice` job); empty: the command line
    // decides for every tensor.
    std::map<std::string, Rounding> rounding;
    std::vector<std::string> notes;
    // GPTQ recipes only: the format of each Linear (GGUF name), and act order (desc_act).
    std::map<std::string, GptqFormat> gptq_tensors;
    bool gptq_desc_act = false;
    bool is_gptq() const { return !gptq_tensors.empty(); }

    // ggml_dominant_type of the tensors' types (default_type when there are none); used as
    // the base type of a llama-quantize command line.
    GgmlType dominant_type() const;
};

// Bounds on recipe text from any source (files, the web app): the largest real recipes (70B
// models) are < 1 MB with a few thousand tensors and three levels of nesting.
inline constexpr size_t kMaxRecipeBytes = 16u << 20;
inline constexpr size_t kMaxRecipeTensors = 100000;
inline constexpr size_t kMaxRecipeNodes = 1000000;  // after expanding YAML aliases
inline constexpr size_t kMaxRecipeYamlAliases = 64;
inline constexpr int kMaxRecipeDepth = 32;

std::string recipe_to_json(const Recipe& recipe);
std::string recipe_to_yaml(const Recipe& recipe);
// Parses JSON or YAML (YAML is a superset; detected by content). `path` names errors. Unknown
// keys, wrong value types and text beyond the bounds above are Errors.
Recipe parse_recipe(const std::string& text, const std::string& path);
Recipe load_recipe(const std::string& path);
// .json or .yaml/.yml, through OutputFile: an existing file is refused unless replace.
void save_recipe(const Recipe& recipe, const std::string& path,
                 Overwrite overwrite = Overwrite::refuse);

// "^blk\.12\.ffn_down\.weight$": every regex metacharacter escaped, anchored both ends.
std::string anchored_pattern(const std::string& tensor_name);
// llama-quantize's type spelling: lower case ("q4_k", "iq4_xs", "f16").
std::string llama_cpp_type_name(GgmlType type);
// One `--tensor-type PATTERN=TYPE` argument per tensor whose type differs from the base.
std::vector<std::string> llama_cpp_tensor_type_args(const Recipe& recipe, GgmlType base);
// `--tensor-type-file` contents: whitespace-separated pattern=type tokens, no comments.
std::string llama_cpp_tensor_type_file(const Recipe& recipe, GgmlType base);
std::string llama_cpp_quantize_command(const Recipe& recipe, const std::string& input_gguf,
                                       const std::string& output_gguf, const std::string& type_file,
                                       const std::string& imatrix_path);
}  // namespace quantlens
