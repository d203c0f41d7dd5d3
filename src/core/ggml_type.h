// ggml tensor types: ids equal to ggml's `enum ggml_type` (append-only, frozen), names as
// ggml prints them, block size (weights per block) and bytes per block. This is the
// storage fact every reader and writer needs; quantization behaviour lives in src/quant.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace quantlens {

enum class GgmlType : uint32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ2_XXS = 16,
    IQ2_XS = 17,
    IQ3_XXS = 18,
    IQ1_S = 19,
    IQ4_NL = 20,
    IQ3_S = 21,
    IQ2_S = 22,
    IQ4_XS = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    IQ1_M = 29,
    BF16 = 30,
    TQ1_0 = 34,
    TQ2_0 = 35,
    MXFP4 = 39,
    NVFP4 = 40,
    Q1_0 = 41,
    Q2_0 = 42,
};

struct GgmlTypeInfo {
    GgmlType type;
    const char* name;    // as ggml prints it: "q4_K", "iq2_xxs", "bf16"
    int64_t block_size;  // weights per block
    size_t bytes_per_block;
    bool quantized;  // a block format (not a plain float/int type)
    // What llama.cpp (llama-quant.cpp) writes instead when a row's length is not a multiple of
    // block_size: a 32-weight block type of similar size, or F16 (quant/quant.h's
    // fallback_type, which also falls to F16 when that one does not fit either).
    GgmlType row_fallback = GgmlType::F16;
};

// Returns nullptr for an id that is not a known ggml type.
const GgmlTypeInfo* ggml_type_info(uint32_t id);
const GgmlTypeInfo& ggml_type_info(GgmlType type);
// Case-insensitive lookup by name ("Q4_K", "q4_k", "iq4_xs", "F16"); nullopt if unknown.
std::optional<GgmlType> ggml_type_from_name(std::string_view name);
// Upper-case display name: "Q4_K", "IQ4_XS", "F16", "BF16".
std::string ggml_type_display_name(GgmlType type);
// Bytes for a row of n weights; throws Error if n is not a multiple of the block size.
size_t ggml_row_size(GgmlType type, int64_t n);
// Nominal bits per weight of a type, 8 · bytes_per_block / block_size: the one place it is
// computed, so plans, recipes, reports and the quant traits rank types alike.
double ggml_type_bpw(GgmlType type);
// Bits per weight of BYTES holding PARAMS weights, 8 · bytes / params; 0 when PARAMS is not
// positive (an empty model or tensor has no rate).
double bits_per_weight(double bytes, double params);
// The most frequent of TYPES, ties going to the higher ggml_type_bpw, IF_NONE when TYPES is
// empty: how llama.cpp's loader guesses a mixed file's type, shared by the recipe's base
// type and the GGUF file type we write.
GgmlType ggml_dominant_type(const std::vector<GgmlType>& types, GgmlType if_none);
const std::vector<GgmlTypeInfo>& ggml_all_types();

}  // namespace quantlens
