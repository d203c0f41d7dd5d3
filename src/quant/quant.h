// Quantization API: every ggml type we speak, quantize (optionally with per-column
// importance weights) and dequantize, bit-exact with ggml's reference implementation,
// multithreaded over rows. Fake quantization (quantize → dequantize into floats) is what
// the engine and the sweep call; files are written from quantize().
//
// Conventions: a tensor is n_rows rows of n_per_row floats (ggml ne[0] = n_per_row).
// importance, when given, has n_per_row entries (an imatrix column), shared by all rows.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/ggml_type.h"

namespace quantlens {

struct QuantTraits {
    GgmlType type;
    const char* name;         // display name "Q4_K"
    int64_t block_size;
    size_t bytes_per_block;
    double bits_per_weight;   // nominal: 8 * bytes_per_block / block_size
    bool needs_importance;    // ggml refuses to quantize without an imatrix (IQ2_XXS, IQ2_XS, IQ1_S)
    bool implemented;         // our quantizer exists
};

const QuantTraits& quant_traits(GgmlType type);
// Types a user may ask for as a quantization target, ordered by bits per weight.
std::vector<GgmlType> quantizable_types();
// Parses "Q4_K,q6_k,IQ4_XS" → types; throws Error naming an unknown type.
std::vector<GgmlType> parse_type_list(const std::string& list);

// Returns bytes written (n_rows * row size). Throws Error if n_per_row is not a multiple of
// the block size, or the type needs importance and none was given.
size_t quantize(GgmlType type, const float* src, void* dst, int64_t n_rows, int64_t n_per_row,
                const float* importance = nullptr);
void dequantize(GgmlType type, const void* src, float* dst, int64_t n_rows, int64_t n_per_row);
void fake_quantize(GgmlType type, const float* src, float* dst, int64_t n_rows, int64_t n_per_row,
                   const float* importance = nullptr);

// llama.cpp's substitution when a type's block does not divide the row length.
bool type_fits_row(GgmlType type, int64_t n_per_row);
GgmlType fallback_type(GgmlType requested, int64_t n_per_row);

}  // namespace quantlens
