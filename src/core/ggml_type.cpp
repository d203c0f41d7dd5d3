#include "core/ggml_type.h"

#include <algorithm>
#include <cctype>
#include <map>

#include "core/error.h"

namespace quantlens {
namespace {

// Block layouts: see src/quant/blocks.h, where each is frozen with static_assert. The last
// column is the type's row_fallback (F16 for every type llama.cpp substitutes nothing for).
const std::vector<GgmlTypeInfo> kTypes = {
    {GgmlType::F32, "f32", 1, 4, false, GgmlType::F16},
    {GgmlType::F16, "f16", 1, 2, false, GgmlType::F16},
    {GgmlType::Q4_0, "q4_0", 32, 18, true, GgmlType::F16},
    {GgmlType::Q4_1, "q4_1", 32, 20, true, GgmlType::F16},
    {GgmlType::Q5_0, "q5_0", 32, 22, true, GgmlType::F16},
    {GgmlType::Q5_1, "q5_1", 32, 24, true, GgmlType::F16},
    {GgmlType::Q8_0, "q8_0", 32, 34, true, GgmlType::F16},
    {GgmlType::Q8_1, "q8_1", 32, 36, true, GgmlType::F16},
    {GgmlType::Q2_K, "q2_K", 256, 84, true, GgmlType::IQ4_NL},
    {GgmlType::Q3_K, "q3_K", 256, 110, true, GgmlType::IQ4_NL},
    {GgmlType::Q4_K, "q4_K", 256, 144, true, GgmlType::Q5_0},
    {GgmlType::Q5_K, "q5_K", 256, 176, true, GgmlType::Q5_1},
    {GgmlType::Q6_K, "q6_K", 256, 210, true, GgmlType::Q8_0},
    {GgmlType::Q8_K, "q8_K", 256, 292, true, GgmlType::F16},
    {GgmlType::IQ2_XXS, "iq2_xxs", 256, 66, true, GgmlType::IQ4_NL},
    {GgmlType::IQ2_XS, "iq2_xs", 256, 74, true, GgmlType::IQ4_NL},
    {GgmlType::IQ3_XXS, "iq3_xxs", 256, 98, true, GgmlType::IQ4_NL},
    {GgmlType::IQ1_S, "iq1_s", 256, 50, true, GgmlType::IQ4_NL},
    {GgmlType::IQ4_NL, "iq4_nl", 32, 18, true, GgmlType::F16},
    {GgmlType::IQ3_S, "iq3_s", 256, 110, true, GgmlType::IQ4_NL},
    {GgmlType::IQ2_S, "iq2_s", 256, 82, true, GgmlType::IQ4_NL},
    {GgmlType::IQ4_XS, "iq4_xs", 256, 136, true, GgmlType::IQ4_NL},
    {GgmlType::I8, "i8", 1, 1, false, GgmlType::F16},
    {GgmlType::I16, "i16", 1, 2, false, GgmlType::F16},
    {GgmlType::I32, "i32", 1, 4, false, GgmlType::F16},
    {GgmlType::I64, "i64", 1, 8, false, GgmlType::F16},
    {GgmlType::F64, "f64", 1, 8, false, GgmlType::F16},
    {GgmlType::IQ1_M, "iq1_m", 256, 56, true, GgmlType::IQ4_NL},
    {GgmlType::BF16, "bf16", 1, 2, false, GgmlType::F16},
    {GgmlType::TQ1_0, "tq1_0", 256, 54, true, GgmlType::Q4_0},
    {GgmlType::TQ2_0, "tq2_0", 256, 66, true, GgmlType::Q4_0},
    {GgmlType::MXFP4, "mxfp4", 32, 17, true, GgmlType::F16},
    // Sizes inferred from golden-quants.gguf (bits per weight 4.5, 1.125, 2.25); the
    // quant module's static_asserts on the block structs are the authority.
    {GgmlType::NVFP4, "nvfp4", 64, 36, true, GgmlType::F16},
    {GgmlType::Q1_0, "q1_0", 128, 18, true, GgmlType::F16},
    {GgmlType::Q2_0, "q2_0", 64, 18, true, GgmlType::F16},
};

std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

}  // namespace

const std::vector<GgmlTypeInfo>& ggml_all_types() {
    return kTypes;
}

const GgmlTypeInfo* ggml_type_info(uint32_t id) {
    for (const auto& t : kTypes)
        if (static_cast<uint32_t>(t.type) == id) return &t;
    return nullptr;
}

const GgmlTypeInfo& ggml_type_info(GgmlType type) {
    const GgmlTypeInfo* info = ggml_type_info(static_cast<uint32_t>(type));
    QL_ASSERT(info != nullptr);
    return *info;
}

std::optional<GgmlType> ggml_type_from_name(std::string_view name) {
    const std::string want = lower(name);
    for (const auto& t : kTypes)
        if (lower(t.name) == want) return t.type;
    return std::nullopt;
}

std::string ggml_type_display_name(GgmlType type) {
    std::string s = ggml_type_info(type).name;
    std::transform(s.begin(), s.end(), s.begin(),
                   [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    return s;
}

double ggml_type_bpw(GgmlType type) {
    const GgmlTypeInfo& info = ggml_type_info(type);
    return 8.0 * static_cast<double>(info.bytes_per_block) / static_cast<double>(info.block_size);
}

double bits_per_weight(double bytes, double params) {
    return params > 0 ? 8.0 * bytes / params : 0.0;
}

GgmlType ggml_dominant_type(const std::vector<GgmlType>& types, GgmlType if_none) {
    std::map<GgmlType, int> counts;
    for (GgmlType t : types) ++counts[t];
    GgmlType best = if_none;
    int best_count = -1;
    for (const auto& [type, count] : counts) {
        if (count > best_count ||
            (count == best_count && ggml_type_bpw(type) > ggml_type_bpw(best))) {
            best = type;
            best_count = count;
        }
    }
    return best;
}

size_t ggml_row_size(GgmlType type, int64_t n) {
    const GgmlTypeInfo& info = ggml_type_info(type);
    QL_CHECK(n >= 0 && n % info.block_size == 0,
             "row of {} weights is not a multiple of the {} block size {}", n, info.name,
             info.block_size);
    return static_cast<size_t>(n / info.block_size) * info.bytes_per_block;
}

}  // namespace quantlens
