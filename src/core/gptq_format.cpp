// GPTQ storage formats and their checkpoint bytes: see gptq_format.h.
#include "core/gptq_format.h"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

#include "core/error.h"

namespace quantlens {

bool gptq_bits_supported(int bits) {
    return std::find(std::begin(kGptqBits), std::end(kGptqBits), bits) != std::end(kGptqBits);
}

bool gptq_group_supported(int group) {
    return std::find(std::begin(kGptqGroups), std::end(kGptqGroups), group) !=
           std::end(kGptqGroups);
}

std::string gptq_format_name(const GptqFormat& f) {
    const std::string group = f.group < 0 ? "pc" : fmt::format("g{}", f.group);
    return fmt::format("gptq{}{}{}", f.bits, group, f.sym ? "" : "a");
}

std::optional<GptqFormat> gptq_format_from_name(std::string_view name) {
    std::string lower(name);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    for (const GptqFormat& f : gptq_format_menu())
        if (gptq_format_name(f) == lower) return f;
    return std::nullopt;
}

std::vector<GptqFormat> gptq_format_menu() {
    std::vector<GptqFormat> out;
    for (int bits : kGptqBits)
        for (int group : kGptqGroups)
            for (bool sym : {true, false}) out.push_back({bits, group, sym});
    return out;
}

std::vector<GptqFormat> parse_gptq_format_list(const std::string& list) {
    if (list == "gptq" || list == "GPTQ") return gptq_format_menu();
    std::vector<GptqFormat> out;
    size_t start = 0;
    while (start <= list.size()) {
        size_t end = list.find(',', start);
        if (end == std::string::npos) end = list.size();
        const std::string item = list.substr(start, end - start);
        if (!item.empty()) {
            const auto f = gptq_format_from_name(item);
            QL_CHECK(f.has_value(),
                     "unknown GPTQ format '{}' (names like gptq4g128, gptq4g128a, gptq8pc; "
                     "bits 2/3/4/8, groups 32/64/128 or pc)",
                     item);
            if (std::find(out.begin(), out.end(), *f) == out.end()) out.push_back(*f);
        }
        start = end + 1;
    }
    QL_CHECK(!out.empty(), "no GPTQ formats in '{}'", list);
    return out;
}

std::string gptq_shape_problem(const GptqFormat& f, int64_t out, int64_t in) {
    if (!gptq_bits_supported(f.bits) || !gptq_group_supported(f.group))
        return fmt::format(
            "{}-bit group {} is not a GPTQ format (bits 2/3/4/8, groups "
            "32/64/128/-1)",
            f.bits, f.group);
    if (in <= 0 || out <= 0) return "it is empty";
    if (in % 32 != 0)
        return fmt::format(
            "its {} input columns are not a multiple of 32 (qweight packs 32 "
            "input rows per {} words)",
            in, f.bits);
    if (out % 32 != 0)
        return fmt::format(
            "its {} outputs are not a multiple of 32 (qzeros packs 32 outputs per "
            "{} words)",
            out, f.bits);
    if (f.group > 0 && in % f.group != 0)
        return fmt::format("group size {} does not divide its {} input columns", f.group, in);
    return {};
}

void check_gptq_shape(const GptqFormat& f, int64_t out, int64_t in, const std::string& tensor) {
    const std::string problem = gptq_shape_problem(f, out, in);
    QL_CHECK(problem.empty(), "tensor '{}' ({} × {}) cannot be stored as {}: {}", tensor, out, in,
             gptq_format_name(f), problem);
}

int64_t gptq_group_count(const GptqFormat& f, int64_t in) {
    return f.group > 0 ? in / f.group : 1;
}

uint64_t gptq_module_bytes(const GptqFormat& f, int64_t out, int64_t in) {
    QL_ASSERT(gptq_shape_problem(f, out, in).empty());
    const auto o = static_cast<uint64_t>(out), i = static_cast<uint64_t>(in);
    const auto g = static_cast<uint64_t>(gptq_group_count(f, in));
    const auto bits = static_cast<uint64_t>(f.bits);
    const uint64_t qweight = i / 32 * bits * o * 4;
    const uint64_t qzeros = g * (o / 32 * bits) * 4;
    const uint64_t scales = g * o * 2;
    const uint64_t g_idx = i * 4;
    return qweight + qzeros + scales + g_idx;
}

}  // namespace quantlens
