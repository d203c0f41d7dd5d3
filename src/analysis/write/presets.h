// llama.cpp's uniform quantization presets (llama-quantize's file types: Q4_K_M, Q6_K,
// IQ4_XS, ...) as per-tensor recipes, so a preset is just one more recipe that `quantize`,
// `plan` and `verify` can use and compare against.
//
// Promise: preset_recipe() chooses, for every tensor llama.cpp would quantize, the type
// llama-quantize chooses for that file type (the per-tensor rules of llama.cpp's
// llama_tensor_get_type as of the 2025-02 build the reference files were made with:
// more bits for attn_v / ffn_down in the layers `use_more_bits` picks, output and tied
// token_embd at Q6_K, GQA and expert-count conditions, imatrix-dependent choices), then
// applies llama.cpp's row-length fallback and records every fallback in Recipe::notes.
// Tensors are visited in llama.cpp's order (non-block tensors by name, then by layer and
// name) because the attn_v / ffn_down counters depend on it.
//
// general.file_type: a preset writes its own llama_ftype id (15 = Q4_K_M, 18 = Q6_K, ...).
// A mixed recipe writes the id of its dominant type the way llama.cpp's loader guesses a
// file type from the most frequent tensor type (Q4_K → Q4_K_M, Q3_K → Q3_K_M,
// Q5_K → Q5_K_M, Q6_K → Q6_K, Q8_0 → Q8_0, ...).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/ggml_type.h"
#include "formats/model_config.h"
#include "formats/recipe.h"
#include "model/model.h"

namespace quantlens {

struct Preset {
    const char* name;       // llama-quantize's spelling: "Q4_K_M", "IQ4_XS"
    uint32_t ftype;         // llama_ftype id written as general.file_type
    GgmlType default_type;  // the type most tensors get
    bool needs_imatrix;     // llama-quantize refuses it without an imatrix
};

const std::vector<Preset>& all_presets();
// Case-insensitive; nullptr if unknown.
const Preset* find_preset(std::string_view name);
// Throws Error listing the known presets when `name` is unknown.
const Preset& get_preset(std::string_view name);
// Display name of a llama_ftype id ("Q4_K_M"); "ftype N" if unknown.
std::string ftype_name(uint32_t ftype);
// general.file_type for a file whose most frequent tensor type is `type` (llama.cpp's guess).
uint32_t ftype_for_dominant_type(GgmlType type);

// llama.cpp's test of whether llama-quantize quantizes a tensor at all: 2-D or more (after
// dropping trailing 1s), a ".weight", not a norm, not an MoE router (ffn_gate_inp).
bool llama_quantizes(const std::string& name, const std::vector<int64_t>& ne);

// Indices of `names` in llama.cpp's tensor order: tensors outside blocks first, then by
// block number; by name within each group.
std::vector<size_t> llama_tensor_order(const std::vector<std::string>& names);

// The per-tensor types of a preset, keyed by GGUF name, with fallbacks applied (each one
// also described in notes). `has_imatrix` matters for a few presets (IQ3_XXS, IQ4_NL,
// IQ4_XS, Q4_0, Q5_0). Recipe::budget_kind = "preset", budget_value = the ftype id.
Recipe preset_recipe(const Preset& preset, const ModelConfig& config,
                     const std::vector<TensorInfo>& tensors, bool has_imatrix);
Recipe preset_recipe(std::string_view preset, const Model& model, bool has_imatrix);

}  // namespace quantlens
