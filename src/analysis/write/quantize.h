// Writes a quantized GGUF that llama.cpp loads: a Model (Hugging Face directory or GGUF)
// plus a Recipe (GGUF tensor name → type) in, one mixed-precision GGUF out.
//
// Promises:
//  - Tensors in llama.cpp's order (outside blocks first, then by block; by name within),
//    metadata as llama.cpp's converter + llama-quantize write it (gguf_metadata.h), with
//    general.quantization_version = 2 and general.file_type (options.file_type, else the
//    recipe's preset id, else the dominant type's ftype — presets.h).
//  - Tensor data from our bit-exact quantizers (src/quant). For a Hugging Face source the
//    weights are first rounded to F16, exactly what llama.cpp's converter (--outtype f16)
//    followed by llama-quantize does, so a preset reproduces llama-quantize's bytes.
//    Norms, biases and MoE routers stay F32 (GGUF sources: their stored type). A GGUF
//    source tensor already in the requested type is copied, not requantized.
//  - Tensors the recipe does not name get recipe.default_type if llama.cpp would quantize
//    them. A type whose block does not divide a row length gets llama.cpp's fallback
//    (quant.h fallback_type); every fallback is reported by tensor name in the result, or
//    is an Error under options.strict.
//  - Rounding per tensor (recipe.rounding, formats/recipe.h): plain, imatrix or gptq as the
//    recipe names it, whatever else the options hold; a tensor it does not name is rounded
//    as the options say (importance when options.imatrix has its entry, GPTQ where
//    options.gptq covers it). A tensor written in float has no rounding to choose.
//  - Bad input is an Error before any work: recipe tensors the model lacks (all named),
//    a rounding the options cannot do (imatrix without options.imatrix, gptq without
//    options.gptq or for a tensor/type GPTQ does not cover, plain for a type that needs
//    importance), each naming the tensor,
//    types we cannot write, quantized types on tensors llama.cpp keeps in float, types that
//    need an imatrix without one, an existing output without options.force.
//  - The file is written through OutputFile (core/output_file.h): on a write error (disk
//    full), a failure while quantizing a tensor or SIGINT/SIGTERM, neither the temporary nor
//    a partial output is left; without options.force an output that appears meanwhile is
//    not replaced.
//  - Memory: tensors are quantized one at a time while the file is written (GgufWriter
//    producers), so beyond the source model the peak is one source tensor in F32 plus its
//    output bytes, not the output file.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/ggml_type.h"
#include "formats/imatrix.h"
#include "formats/recipe.h"
#include "model/model.h"

namespace quantlens {

class GptqRounding;

struct QuantizeOptions {
    std::string output_path;
    bool force = false;   // overwrite an existing output
    bool strict = false;  // a fallback is an Error instead of a reported substitution
    // A GGUF source's already-quantized tensor may be converted to another type (the errors
    // of both quantizations add up; llama-quantize asks for --allow-requantize too).
    bool allow_requantize = false;
    // A recipe whose model_hash names another model is refused unless this is set (a recipe
    // measured on one model says nothing reliable about another's tensors).
    bool allow_other_model = false;
    const Imatrix* imatrix = nullptr;
    std::optional<uint32_t> file_type;  // general.file_type override
    bool f16_intermediate = true;       // HF sources: round weights to F16 first (see above)
    bool progress = true;               // progress bar on stderr
    // GPTQ rounding for the tensors and types it covers (analysis/write/gptq_rounding.h); the
    // others are rounded plainly and QuantizedTensor::gptq says which were.
    const GptqRounding* gptq = nullptr;
};

struct QuantizedTensor {
    std::string name;
    std::vector<int64_t> ne;
    GgmlType source_type = GgmlType::F32;
    GgmlType requested = GgmlType::F32;  // what the recipe (or the default) asked for
    GgmlType written = GgmlType::F32;    // what the file holds
    bool quantized = false;              // a weight llama.cpp quantizes (else kept in float)
    bool has_importance = false;         // imatrix weights were used
    bool gptq = false;                   // rounded with GPTQ
    std::optional<Rounding> rounding;    // the recipe's choice; nullopt: the options decide
    uint64_t bytes = 0;                  // data bytes in the output
    std::string note;                    // fallback explanation, "" if none
};

struct QuantizeResult {
    std::string path;
    std::vector<QuantizedTensor> tensors;  // in file order
    std::vector<std::string> fallbacks;    // one line per substituted type, naming the tensor
    uint32_t file_type = 0;
    uint64_t file_bytes = 0;
    uint64_t tensor_bytes = 0;
    int64_t n_params = 0;
    double bpw = 0;  // file bits per parameter (all tensors, as REFERENCE-FIGURES.md counts)
};

// Validates the recipe against the model and resolves every tensor's output type (fallbacks
// applied and described) without quantizing anything. Throws Error on bad input.
std::vector<QuantizedTensor> resolve_tensor_types(const Model& model, const Recipe& recipe,
                                                  const QuantizeOptions& options);

QuantizeResult quantize_model(const Model& model, const Recipe& recipe,
                              const QuantizeOptions& options);

}  // namespace quantlens
