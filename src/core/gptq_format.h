// GPTQ's own storage formats, beside (not inside) the ggml type table: integer quantization
// of a Linear's weight at BITS ∈ {2, 3, 4, 8} with one scale (and zero) per GROUP input
// columns (GROUP ∈ {32, 64, 128}, or −1: one group per output channel), symmetric or not.
// This header owns what such a module costs as GPTQModel's checkpoint stores it
// (checkpoint_format "gptq", AutoGPTQ's v1 layout), so sweeps, plans and reports rank the
// formats alike. The quantizer and the packing live in quant/gptq_pack.h.
//
// Stored per Linear of OUT × IN weights (G = IN / GROUP groups, 1 when per channel):
//   qweight  int32 (IN / 32 · BITS, OUT)   codes, 32 input rows per BITS words
//   qzeros   int32 (G, OUT / 32 · BITS)    zero − 1 per (group, output), packed alike
//   scales   f16   (G, OUT)
//   g_idx    int32 (IN)                    group of each input column
// Bytes = IN·OUT·BITS/8 + G·OUT·BITS/8 + 2·G·OUT + 4·IN; bits per weight = 8·bytes/(IN·OUT).
//
// Names: "gptq<BITS>g<GROUP>" (symmetric) and "gptq<BITS>g<GROUP>a" (asymmetric, with zeros);
// per channel "gptq<BITS>pc" / "gptq<BITS>pca". Example: gptq4g128 is 4-bit, group 128, sym.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace quantlens {

struct GptqFormat {
    int bits = 4;     // 2, 3, 4 or 8
    int group = 128;  // 32, 64, 128, or −1 (per output channel)
    bool sym = true;  // false: a zero point per group ("a" in the name)

    bool operator==(const GptqFormat&) const = default;
};

inline constexpr int kGptqBits[] = {2, 3, 4, 8};
inline constexpr int kGptqGroups[] = {32, 64, 128, -1};

bool gptq_bits_supported(int bits);
bool gptq_group_supported(int group);

std::string gptq_format_name(const GptqFormat& format);
// Inverse of gptq_format_name (case-insensitive); nullopt for anything else.
std::optional<GptqFormat> gptq_format_from_name(std::string_view name);
// Every format: bits {2,3,4,8} × group {32,64,128,−1} × {sym, asym}, by bits then group.
std::vector<GptqFormat> gptq_format_menu();
// "gptq" → the menu; otherwise a comma-separated list of names. Throws Error naming an
// unknown entry.
std::vector<GptqFormat> parse_gptq_format_list(const std::string& list);

// Why a Linear of OUT × IN weights cannot be stored in FORMAT (empty when it can): packing
// takes 32 input rows and 32 outputs at a time, and a group must divide IN.
std::string gptq_shape_problem(const GptqFormat& format, int64_t out, int64_t in);
// Throws Error naming TENSOR when gptq_shape_problem is not empty.
void check_gptq_shape(const GptqFormat& format, int64_t out, int64_t in, const std::string& tensor);
// The checkpoint bytes of one Linear (formula above); requires a valid shape.
uint64_t gptq_module_bytes(const GptqFormat& format, int64_t out, int64_t in);
int64_t gptq_group_count(const GptqFormat& format, int64_t in);

}  // namespace quantlens
