// Derived HF tensors (Family::derive_hf): shapes, float reads and the MXFP4 repacking.
//
// Released MXFP4 layout (transformers' integrations/mxfp4.py, the OCP MX format): blocks
// [E, R, G, 16] uint8 and scales [E, R, G] uint8 for a weight of R output rows and G·32
// inputs; group g of row r holds inputs 32g..32g+31, byte j of its block holding element
// 2j in the low nibble and 2j+1 in the high one (E2M1 codes), scaled by 2^(scale − 127).
// ggml's block_mxfp4 is the same E8M0 byte followed by 16 bytes whose byte j holds element
// j (low nibble) and j + 16 (high nibble), with its E2M1 table doubled and the scale halved:
// the same values. Repacking moves nibbles only, so it is exact and reversible.
#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "model/names.h"
#include "model/sources.h"
#include "quant/blocks.h"
#include "quant/quant.h"

namespace quantlens::detail {

namespace {

void check_dtype(const StTensor& t, StDtype want, const char* what) {
    QL_CHECK(t.dtype == want, "{}: tensor '{}' is {}, expected {} for {}", t.file, t.name,
             st_dtype_name(t.dtype), st_dtype_name(want), what);
}

}  // namespace

DerivedShape derived_shape(const HfDerivedTensor& d, const StTensor& t, const StTensor* scales) {
    DerivedShape out;
    const auto& s = t.shape;
    if (!d.mxfp4_scales.empty()) {
        QL_CHECK(scales != nullptr, "{}: tensor '{}' has no companion '{}'", t.file, t.name,
                 d.mxfp4_scales);
        check_dtype(t, StDtype::U8, "MXFP4 blocks");
        check_dtype(*scales, StDtype::U8, "MXFP4 scales");
        QL_CHECK(
            s.size() == 4 && s[3] == 16 && scales->shape.size() == 3 &&
                std::equal(s.begin(), s.begin() + 3, scales->shape.begin()) && s[1] % d.stride == 0,
            "{}: MXFP4 tensors '{}' {} and '{}' {}: expected blocks [E, rows, groups, 16] "
            "and scales [E, rows, groups] with rows divisible by {}",
            t.file, t.name, format_shape(s), scales->name, format_shape(scales->shape), d.stride);
        out.ne = {s[2] * blocks::QK_MXFP4, s[1] / d.stride, s[0]};
        out.type = GgmlType::MXFP4;
        return out;
    }
    out.type = st_float_type(t);
    if (d.stride == 0) {
        out.ne.assign(s.rbegin(), s.rend());
        return out;
    }
    QL_CHECK((s.size() == 3 || s.size() == 2) && s.back() % d.stride == 0,
             "{}: tensor '{}' has shape {}, expected stacked experts [E, in, out·{}] or biases "
             "[E, out·{}]",
             t.file, t.name, format_shape(s), d.stride, d.stride);
    if (s.size() == 3)
        out.ne = {s[1], s[2] / d.stride, s[0]};
    else
        out.ne = {s[1] / d.stride, s[0]};
    return out;
}

std::vector<uint8_t> mxfp4_to_ggml(const StTensor& blocks_t, const StTensor& scales_t, int stride,
                                   int offset) {
    const int64_t E = blocks_t.shape[0], R = blocks_t.shape[1], G = blocks_t.shape[2];
    const int64_t OUT = R / stride;
    std::vector<uint8_t> out(static_cast<size_t>(E * OUT * G) * sizeof(blocks::block_mxfp4));
    auto* dst = reinterpret_cast<blocks::block_mxfp4*>(out.data());
    const uint8_t* bl = blocks_t.data.data();
    const uint8_t* sc = scales_t.data.data();
    for (int64_t e = 0; e < E; ++e) {
        for (int64_t o = 0; o < OUT; ++o) {
            const int64_t r = o * stride + offset;  // the HF row (gate/up interleaved)
            for (int64_t g = 0; g < G; ++g, ++dst) {
                const int64_t at = (e * R + r) * G + g;
                const uint8_t* src = bl + at * 16;
                uint8_t codes[blocks::QK_MXFP4];  // element order
                for (int j = 0; j < 16; ++j) {
                    codes[2 * j] = src[j] & 0x0F;
                    codes[2 * j + 1] = src[j] >> 4;
                }
                dst->e = sc[at];
                for (int j = 0; j < 16; ++j)
                    dst->qs[j] = static_cast<uint8_t>(codes[j] | (codes[j + 16] << 4));
            }
        }
    }
    return out;
}

void derived_read_f32(const HfDerivedTensor& d, const StTensor& t, const DerivedShape& shape,
                      std::span<const uint8_t> mxfp4, std::span<float> out) {
    if (shape.type == GgmlType::MXFP4) {
        const int64_t cols = shape.ne[0];
        dequantize(GgmlType::MXFP4, mxfp4.data(), out.data(),
                   static_cast<int64_t>(out.size()) / cols, cols);
        return;
    }
    if (d.stride == 0) {
        SafetensorsModel::to_f32(t, out);
        return;
    }
    std::vector<float> hf(static_cast<size_t>(t.n_elements()));
    SafetensorsModel::to_f32(t, hf);
    const int64_t S = d.stride, OUT = shape.ne[shape.ne.size() == 3 ? 1 : 0];
    if (shape.ne.size() == 2) {  // biases [E, OUT·S] → [E][OUT]
        const int64_t E = shape.ne[1];
        for (int64_t e = 0; e < E; ++e)
            for (int64_t o = 0; o < OUT; ++o) out[e * OUT + o] = hf[e * OUT * S + o * S + d.offset];
        return;
    }
    const int64_t IN = shape.ne[0], E = shape.ne[2];  // [E, IN, OUT·S] → [E][OUT][IN]
    for (int64_t e = 0; e < E; ++e)
        for (int64_t i = 0; i < IN; ++i) {
            const float* row = hf.data() + (e * IN + i) * OUT * S + d.offset;
            float* dst = out.data() + e * OUT * IN + i;
            for (int64_t o = 0; o < OUT; ++o) dst[o * IN] = row[o * S];
        }
}

}  // namespace quantlens::detail
