// Q1_0 and Q2_0: the plainest low-bit formats. Q1_0 keeps the sign of each of 128 weights
// and one fp16 scale (the mean absolute value); Q2_0 rounds each of 64 weights to
// {-1, 0, 1, 2} times an fp16 scale (the absolute maximum). Importance weights do not
// apply: ggml quantizes them row by row with the reference code either way.
#include "quant/block_rows.h"
#include "quant/iq_common.h"
#include "quant/kernels.h"

namespace quantlens::kernels {

using blocks::block_q1_0;
using blocks::block_q2_0;
using blocks::QK1_0;
using blocks::QK2_0;

namespace {

void q1_0_block(const float* x, const float* /*importance: unused by ggml*/, block_q1_0& y) {
    float sum_abs = 0.0f;
    for (int j = 0; j < QK1_0; j++) sum_abs += std::fabs(x[j]);
    y.d = iq::to_half(sum_abs / QK1_0);
    std::memset(y.qs, 0, sizeof(y.qs));
    for (int j = 0; j < QK1_0; ++j) {
        if (x[j] >= 0.0f) y.qs[j / 8] |= static_cast<uint8_t>(1 << (j % 8));
    }
}

void q1_0_dequantize(const block_q1_0& x, float* y) {
    const float d = iq::from_half(x.d);
    for (int j = 0; j < QK1_0; ++j) y[j] = ((x.qs[j / 8] >> (j % 8)) & 1) ? d : -d;
}

void q2_0_block(const float* x, const float* /*importance: unused by ggml*/, block_q2_0& y) {
    float amax = 0.0f;
    for (int j = 0; j < QK2_0; j++) amax = std::max(amax, std::fabs(x[j]));
    const float id = amax > 0.0f ? 1.0f / amax : 0.0f;
    y.d = iq::to_half(amax);
    std::memset(y.qs, 0, sizeof(y.qs));
    for (int j = 0; j < QK2_0; ++j) {
        // Codes 0..3 stand for -1, 0, +1, +2 times the scale.
        const int q = std::clamp(static_cast<int>(std::round(x[j] * id)) + 1, 0, 3);
        y.qs[j / 4] |= static_cast<uint8_t>(q << ((j % 4) * 2));
    }
}

void q2_0_dequantize(const block_q2_0& x, float* y) {
    const float d = iq::from_half(x.d);
    for (int j = 0; j < QK2_0; ++j) {
        const int q = (x.qs[j / 4] >> ((j % 4) * 2)) & 0x03;
        y[j] = static_cast<float>(q - 1) * d;
    }
}

}  // namespace

QL_BLOCK_KERNELS(q1_0, block_q1_0, QK1_0, q1_0_block, q1_0_dequantize)
QL_BLOCK_KERNELS(q2_0, block_q2_0, QK2_0, q2_0_block, q2_0_dequantize)

}  // namespace quantlens::kernels
