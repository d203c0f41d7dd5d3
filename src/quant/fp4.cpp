// MXFP4 and NVFP4: 4-bit E2M1 codes (ggml's kvalues_fp4 table, stored doubled) with a
// shared scale per group. MXFP4 uses one E8M0 power-of-two exponent per 32 weights, NVFP4
// one unsigned E4M3 scale per 16 weights (four per 64-weight block, no tensor-level scale).
// Both pick the nearest code with the first minimum winning, as ggml's best_index_mxfp4.
// Importance weights do not apply to either.
#include "quant/block_rows.h"
#include "quant/iq_common.h"
#include "quant/kernels.h"
#include "quant/tables_generated.h"

namespace quantlens::kernels {
namespace {

using namespace iq;
using blocks::block_mxfp4;
using blocks::block_nvfp4;
using blocks::QK_MXFP4;
using blocks::QK_NVFP4;
using blocks::QK_NVFP4_SUB;

int best_fp4_index(float x, float e) {
    int best_index = 0;
    float best_err = std::fabs(tables::kvalues_fp4[0] * e - x);
    for (int i = 1; i < 16; i++) {
        const float err = std::fabs(tables::kvalues_fp4[i] * e - x);
        if (err < best_err) {
            best_index = i;
            best_err = err;
        }
    }
    return best_index;
}

// Half of 2^(e-127): the codes are doubled, so the scale is halved. e < 2 is subnormal.
float e8m0_to_float_half(uint8_t e) {
    const uint32_t bits = e < 2 ? (0x00200000u << e) : static_cast<uint32_t>(e - 1) << 23;
    return bits_float(bits);
}

// Half the value of an unsigned E4M3 byte (bias 7; 0 and 0x7F read as zero).
float ue4m3_to_float_half(uint8_t x) {
    if (x == 0 || x == 0x7F) return 0.0f;
    const int exp = (x >> 3) & 0xF;
    const int man = x & 0x7;
    const float raw = exp == 0 ? std::ldexp(static_cast<float>(man), -9)
                               : std::ldexp(1.0f + static_cast<float>(man) / 8.0f, exp - 7);
    return raw * 0.5f;
}

// Float → unsigned E4M3: mantissa rounded by its first dropped bit (half up), saturating at
// 448 (0x7E); subnormals rounded from x * 2^9.
uint8_t float_to_ue4m3(float x) {
    if (!(x > 0.0f)) return 0;
    if (x > 448.0f) x = 448.0f;
    const uint32_t bits = float_bits(x);
    const int fp32_exp = static_cast<int>((bits >> 23) & 0xFF) - 127;
    const int fp32_man = static_cast<int>((bits >> 20) & 0x7);
    int exp = fp32_exp + 7;
    if (exp <= 0) {
        int man = static_cast<int>(x * 512.0f + 0.5f);
        if (man > 7) man = 7;
        if (man < 1) return 0;
        return static_cast<uint8_t>(man);
    }
    if (exp >= 15) return 0x7E;
    int man = fp32_man + static_cast<int>((bits >> 19) & 1);
    if (man > 7) {
        man = 0;
        if (++exp >= 15) return 0x7E;
    }
    return static_cast<uint8_t>((exp << 3) | man);
}

void mxfp4_block(const float* x, const float* /*importance: unused by ggml*/, block_mxfp4& y) {
    float amax = 0.0f;
    for (int j = 0; j < QK_MXFP4; j++) amax = std::max(amax, std::fabs(x[j]));
    // Largest code is 6 (stored 12), so the exponent is floor(log2(amax)) - 2.
    const uint8_t e = amax > 0.0f ? static_cast<uint8_t>(std::floor(std::log2(amax)) - 2 + 127) : 0;
    const float d = e8m0_to_float_half(e);
    y.e = e;
    for (int j = 0; j < QK_MXFP4 / 2; ++j) {
        const int x0 = best_fp4_index(x[j], d);
        const int x1 = best_fp4_index(x[QK_MXFP4 / 2 + j], d);
        y.qs[j] = static_cast<uint8_t>(x0 | (x1 << 4));
    }
}

void mxfp4_dequantize(const block_mxfp4& x, float* y) {
    const float d = e8m0_to_float_half(x.e);
    for (int j = 0; j < QK_MXFP4 / 2; ++j) {
        y[j] = tables::kvalues_fp4[x.qs[j] & 0x0F] * d;
        y[j + QK_MXFP4 / 2] = tables::kvalues_fp4[x.qs[j] >> 4] * d;
    }
}

void nvfp4_block(const float* x, const float* /*importance: unused by ggml*/, block_nvfp4& y) {
    for (int s = 0; s < QK_NVFP4 / QK_NVFP4_SUB; s++) {
        const float* xb = x + s * QK_NVFP4_SUB;
        float amax = 0.0f;
        for (int j = 0; j < QK_NVFP4_SUB; j++) amax = std::max(amax, std::fabs(xb[j]));
        const uint8_t ue = float_to_ue4m3(amax / 6.0f);  // 6 = largest E2M1 value
        y.d[s] = ue;
        const float d = ue4m3_to_float_half(ue);
        for (int j = 0; j < QK_NVFP4_SUB / 2; ++j) {
            const int x0 = best_fp4_index(xb[j], d);
            const int x1 = best_fp4_index(xb[QK_NVFP4_SUB / 2 + j], d);
            y.qs[s * (QK_NVFP4_SUB / 2) + j] = static_cast<uint8_t>(x0 | (x1 << 4));
        }
    }
}

void nvfp4_dequantize(const block_nvfp4& x, float* y) {
    for (int s = 0; s < QK_NVFP4 / QK_NVFP4_SUB; s++) {
        const float d = ue4m3_to_float_half(x.d[s]);
        float* yb = y + s * QK_NVFP4_SUB;
        for (int j = 0; j < QK_NVFP4_SUB / 2; ++j) {
            const uint8_t q = x.qs[s * (QK_NVFP4_SUB / 2) + j];
            yb[j] = tables::kvalues_fp4[q & 0x0F] * d;
            yb[j + QK_NVFP4_SUB / 2] = tables::kvalues_fp4[q >> 4] * d;
        }
    }
}

}  // namespace

QL_BLOCK_KERNELS(mxfp4, block_mxfp4, QK_MXFP4, mxfp4_block, mxfp4_dequantize)
QL_BLOCK_KERNELS(nvfp4, block_nvfp4, QK_NVFP4, nvfp4_block, nvfp4_dequantize)

}  // namespace quantlens::kernels
