// The quantization dispatcher: one traits table over every ggml type, routing to the
// per-format kernels of kernels.h (or to core/half.h for F32/F16/BF16), validating input
// once, and splitting rows across the thread pool. Rows are independent in every ggml
// quantizer (importance-weighted paths use per-row statistics only), so any row split gives
// the same bytes as a single-threaded run.
#include "quant/quant.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <cstring>
#include <iterator>

#include "core/error.h"
#include "core/half.h"
#include "core/parallel.h"
#include "quant/kernels.h"

namespace quantlens {
namespace {

using QuantizeFn = void (*)(const float*, void*, int64_t, int64_t, const float*);
using DequantizeFn = void (*)(const void*, float*, int64_t);

struct Kernels {
    GgmlType type;
    QuantizeFn quantize;
    DequantizeFn dequantize;
};

// Block formats with a kernel pair in kernels.h, in ggml id order.
#define QL_KERNELS(T, t) \
    { GgmlType::T, kernels::quantize_rows_##t, kernels::dequantize_row_##t }
const Kernels kBlockKernels[] = {
    QL_KERNELS(Q4_0, q4_0),       QL_KERNELS(Q4_1, q4_1),       QL_KERNELS(Q5_0, q5_0),
    QL_KERNELS(Q5_1, q5_1),       QL_KERNELS(Q8_0, q8_0),       QL_KERNELS(Q2_K, q2_K),
    QL_KERNELS(Q3_K, q3_K),       QL_KERNELS(Q4_K, q4_K),       QL_KERNELS(Q5_K, q5_K),
    QL_KERNELS(Q6_K, q6_K),       QL_KERNELS(IQ2_XXS, iq2_xxs), QL_KERNELS(IQ2_XS, iq2_xs),
    QL_KERNELS(IQ3_XXS, iq3_xxs), QL_KERNELS(IQ1_S, iq1_s),     QL_KERNELS(IQ4_NL, iq4_nl),
    QL_KERNELS(IQ3_S, iq3_s),     QL_KERNELS(IQ2_S, iq2_s),     QL_KERNELS(IQ4_XS, iq4_xs),
    QL_KERNELS(IQ1_M, iq1_m),     QL_KERNELS(TQ1_0, tq1_0),     QL_KERNELS(TQ2_0, tq2_0),
    QL_KERNELS(MXFP4, mxfp4),     QL_KERNELS(NVFP4, nvfp4),     QL_KERNELS(Q1_0, q1_0),
    QL_KERNELS(Q2_0, q2_0),
};
#undef QL_KERNELS
static_assert(std::size(kBlockKernels) == 25, "one row per QL_QUANT_TYPES entry");

const Kernels* find_kernels(GgmlType type) {
    for (const auto& k : kBlockKernels)
        if (k.type == type) return &k;
    return nullptr;
}

bool is_float_type(GgmlType t) {
    return t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16;
}

// ggml refuses to quantize these without an imatrix (ggml_quantize_requires_imatrix).
bool requires_importance(GgmlType t) {
    return t == GgmlType::IQ2_XXS || t == GgmlType::IQ2_XS || t == GgmlType::IQ1_S;
}

std::vector<QuantTraits> build_traits() {
    std::vector<QuantTraits> out;
    for (const auto& info : ggml_all_types()) {
        QuantTraits t{};
        t.type = info.type;
        t.name = nullptr;  // filled below from the display name
        t.block_size = info.block_size;
        t.bytes_per_block = info.bytes_per_block;
        t.bits_per_weight = ggml_type_bpw(info.type);
        t.needs_importance = requires_importance(info.type);
        const Kernels* k = find_kernels(info.type);
        // Every block format in kernels.h has its kernels (pending.cpp holds no stubs any more).
        t.implemented = is_float_type(info.type) || k != nullptr;
        out.push_back(t);
    }
    return out;
}

struct TraitsTable {
    std::vector<QuantTraits> traits;
    std::vector<std::string> names;  // owns the display names the traits point to
};

const TraitsTable& table() {
    static const TraitsTable t = [] {
        TraitsTable tt;
        tt.traits = build_traits();
        tt.names.reserve(tt.traits.size());
        for (const auto& q : tt.traits) tt.names.push_back(ggml_type_display_name(q.type));
        for (size_t i = 0; i < tt.traits.size(); ++i) tt.traits[i].name = tt.names[i].c_str();
        return tt;
    }();
    return t;
}

bool is_target(GgmlType t) {
    return is_float_type(t) || find_kernels(t) != nullptr;
}

// Validates a request once at the boundary; inner kernels assume valid input.
void check_request(GgmlType type, int64_t n_rows, int64_t n_per_row) {
    const QuantTraits& tr = quant_traits(type);
    QL_CHECK(is_target(type), "type {} is not a quantization target", tr.name);
    QL_CHECK(tr.implemented, "quantization type {} is not implemented yet", tr.name);
    QL_CHECK(n_rows >= 0 && n_per_row > 0, "quantize to {}: invalid shape {} rows x {} columns",
             tr.name, n_rows, n_per_row);
    QL_CHECK(n_per_row % tr.block_size == 0,
             "quantize to {}: row length {} is not a multiple of the block size {} (use "
             "fallback_type)",
             tr.name, n_per_row, tr.block_size);
}

// In parallel: a serial pass over an 8B model's weights costs as much as quantizing them on 16
// threads. The lowest bad index is reported, so the message does not depend on scheduling.
void check_finite(GgmlType type, const float* src, int64_t n_rows, int64_t n_per_row) {
    const int64_t n = n_rows * n_per_row;
    std::atomic<int64_t> first_bad{n};
    parallel_for(
        static_cast<size_t>(n),
        [&](size_t i0, size_t i1) {
            for (size_t i = i0; i < i1; ++i) {
                if (std::isfinite(src[i])) continue;
                int64_t seen = first_bad.load();
                while (static_cast<int64_t>(i) < seen &&
                       !first_bad.compare_exchange_weak(seen, static_cast<int64_t>(i))) {
                }
                return;
            }
        },
        size_t{1} << 18);
    const int64_t i = first_bad.load();
    if (i < n)
        fail("quantize to {}: weight at row {}, column {} is {}; quantization needs finite weights",
             quant_traits(type).name, i / n_per_row, i % n_per_row, src[i]);
}

// Rows per parallel chunk: enough work per task to amortize scheduling.
size_t rows_per_chunk(int64_t n_per_row) {
    return static_cast<size_t>(std::max<int64_t>(1, 16384 / std::max<int64_t>(1, n_per_row)));
}

void quantize_chunk(GgmlType type, const float* src, void* dst, int64_t n_rows, int64_t n_per_row,
                    const float* importance) {
    const int64_t n = n_rows * n_per_row;
    switch (type) {
        case GgmlType::F32:
            std::memcpy(dst, src, static_cast<size_t>(n) * 4);
            return;
        case GgmlType::F16: {
            auto* y = static_cast<uint16_t*>(dst);
            for (int64_t i = 0; i < n; ++i) y[i] = f32_to_f16(src[i]);
            return;
        }
        case GgmlType::BF16: {
            auto* y = static_cast<uint16_t*>(dst);
            for (int64_t i = 0; i < n; ++i) y[i] = f32_to_bf16(src[i]);
            return;
        }
        default:
            find_kernels(type)->quantize(src, dst, n_rows, n_per_row, importance);
    }
}

void dequantize_chunk(GgmlType type, const void* src, float* dst, int64_t n) {
    switch (type) {
        case GgmlType::F32:
            std::memcpy(dst, src, static_cast<size_t>(n) * 4);
            return;
        case GgmlType::F16: {
            const auto* x = static_cast<const uint16_t*>(src);
            for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(x[i]);
            return;
        }
        case GgmlType::BF16: {
            const auto* x = static_cast<const uint16_t*>(src);
            for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(x[i]);
            return;
        }
        default:
            find_kernels(type)->dequantize(src, dst, n);
    }
}

std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

}  // namespace

const QuantTraits& quant_traits(GgmlType type) {
    for (const auto& t : table().traits)
        if (t.type == type) return t;
    QL_ASSERT(false && "type missing from ggml_all_types()");
    return table().traits.front();
}

std::vector<GgmlType> quantizable_types() {
    std::vector<QuantTraits> live;
    for (const auto& t : table().traits)
        if (is_target(t.type) && t.implemented) live.push_back(t);
    std::stable_sort(live.begin(), live.end(), [](const QuantTraits& a, const QuantTraits& b) {
        return a.bits_per_weight < b.bits_per_weight;
    });
    std::vector<GgmlType> out;
    for (const auto& t : live) out.push_back(t.type);
    return out;
}

std::vector<GgmlType> parse_type_list(const std::string& list) {
    std::vector<GgmlType> out;
    size_t pos = 0;
    while (pos <= list.size()) {
        size_t end = list.find(',', pos);
        if (end == std::string::npos) end = list.size();
        std::string name = list.substr(pos, end - pos);
        name.erase(0, name.find_first_not_of(" \t"));
        name.erase(name.find_last_not_of(" \t") + 1);
        pos = end + 1;
        if (name.empty()) continue;
        if (lower(name) == "all") {
            for (GgmlType t : quantizable_types())
                if (std::find(out.begin(), out.end(), t) == out.end()) out.push_back(t);
            continue;
        }
        const auto type = ggml_type_from_name(name);
        if (!type || !is_target(*type)) {
            std::string known;
            for (const auto& t : table().traits)
                if (is_target(t.type)) known += (known.empty() ? "" : ", ") + std::string(t.name);
            fail("unknown quantization type '{}' (known: {})", name, known);
        }
        if (std::find(out.begin(), out.end(), *type) == out.end()) out.push_back(*type);
    }
    QL_CHECK(!out.empty(), "empty quantization type list '{}'", list);
    return out;
}

namespace {
// What quantize and fake_quantize check first: the shape, an imatrix where the type needs
// one, finite weights. Returns the type's traits.
const QuantTraits& check_quantize_input(GgmlType type, const float* src, int64_t n_rows,
                                        int64_t n_per_row, const float* importance) {
    check_request(type, n_rows, n_per_row);
    const QuantTraits& tr = quant_traits(type);
    QL_CHECK(!tr.needs_importance || importance,
             "quantize to {}: this type needs importance weights (an imatrix)", tr.name);
    check_finite(type, src, n_rows, n_per_row);
    return tr;
}
}  // namespace

size_t quantize(GgmlType type, const float* src, void* dst, int64_t n_rows, int64_t n_per_row,
                const float* importance) {
    const QuantTraits& tr = check_quantize_input(type, src, n_rows, n_per_row, importance);
    if (importance) {
        for (int64_t j = 0; j < n_per_row; ++j)
            QL_CHECK(std::isfinite(importance[j]) && importance[j] >= 0,
                     "quantize to {}: importance weight {} is {}; expected finite and >= 0",
                     tr.name, j, importance[j]);
    }
    const size_t row_bytes = ggml_row_size(type, n_per_row);
    auto* out = static_cast<uint8_t*>(dst);
    parallel_for(
        static_cast<size_t>(n_rows),
        [&](size_t r0, size_t r1) {
            quantize_chunk(type, src + static_cast<int64_t>(r0) * n_per_row, out + r0 * row_bytes,
                           static_cast<int64_t>(r1 - r0), n_per_row, importance);
        },
        rows_per_chunk(n_per_row));
    return static_cast<size_t>(n_rows) * row_bytes;
}

void dequantize(GgmlType type, const void* src, float* dst, int64_t n_rows, int64_t n_per_row) {
    check_request(type, n_rows, n_per_row);
    const size_t row_bytes = ggml_row_size(type, n_per_row);
    const auto* in = static_cast<const uint8_t*>(src);
    parallel_for(
        static_cast<size_t>(n_rows),
        [&](size_t r0, size_t r1) {
            dequantize_chunk(type, in + r0 * row_bytes, dst + static_cast<int64_t>(r0) * n_per_row,
                             static_cast<int64_t>(r1 - r0) * n_per_row);
        },
        rows_per_chunk(n_per_row));
}

void fake_quantize(GgmlType type, const float* src, float* dst, int64_t n_rows, int64_t n_per_row,
                   const float* importance) {
    check_quantize_input(type, src, n_rows, n_per_row, importance);
    const size_t row_bytes = ggml_row_size(type, n_per_row);
    parallel_for(
        static_cast<size_t>(n_rows),
        [&](size_t r0, size_t r1) {
            const int64_t rows = static_cast<int64_t>(r1 - r0);
            std::vector<uint8_t> buf(static_cast<size_t>(rows) * row_bytes);
            const int64_t off = static_cast<int64_t>(r0) * n_per_row;
            quantize_chunk(type, src + off, buf.data(), rows, n_per_row, importance);
            dequantize_chunk(type, buf.data(), dst + off, rows * n_per_row);
        },
        rows_per_chunk(n_per_row));
}

bool type_fits_row(GgmlType type, int64_t n_per_row) {
    return n_per_row > 0 && n_per_row % ggml_type_info(type).block_size == 0;
}

GgmlType fallback_type(GgmlType requested, int64_t n_per_row) {
    if (type_fits_row(requested, n_per_row)) return requested;
    const GgmlType sub = ggml_type_info(requested).row_fallback;
    return type_fits_row(sub, n_per_row) ? sub : GgmlType::F16;
}

}  // namespace quantlens
