// Q1_0 and Q2_0: the plainest low-bit formats. Q1_0 keeps the sign of each of 128 weights
// and one fp16 scale (the mean absolute value); Q2_0 rounds each of 64 weights to
// {-1, 0, 1, 2} times an fp16 scale (the absolute maximum). Importance weights do not
// apply: ggml quantizes them row by row with the reference code either way.
#include "quant/iq_common.h"
#include "quant/kernels.h"

namespace quantlens::kernels {

using blocks::block_q1_0;
using blocks::block_q2_0;
using blocks::QK1_0;
using blocks::QK2_0;

void quantize_rows_q1_0(const float* x, void* dst, int64_t n_rows, int64_t n_per_row,
                        const float* /*importance: unused by ggml*/) {
    auto* y = static_cast<block_q1_0*>(dst);
    const int64_t nb = n_rows * (n_per_row / QK1_0);
    for (int64_t i = 0; i < nb; i++, x += QK1_0) {
        float sum_abs = 0.0f;
        for (int j = 0; j < QK1_0; j++) sum_abs += std::fabs(x[j]);
        y[i].d = iq::to_half(sum_abs / QK1_0);
        std::memset(y[i].qs, 0, sizeof(y[i].qs));
        for (int j = 0; j < QK1_0; ++j) {
            if (x[j] >= 0.0f) y[i].qs[j / 8] |= static_cast<uint8_t>(1 << (j % 8));
        }
    }
}

void dequantize_row_q1_0(const void* src, float* y, int64_t n) {
    const auto* x = static_cast<const block_q1_0*>(src);
    for (int64_t i = 0; i < n / QK1_0; i++, y += QK1_0) {
        const float d = iq::from_half(x[i].d);
        for (int j = 0; j < QK1_0; ++j) y[j] = ((x[i].qs[j / 8] >> (j % 8)) & 1) ? d : -d;
    }
}

void quantize_rows_q2_0(const float* x, void* dst, int64_t n_rows, int64_t n_per_row,
                        const float* /*importance: unused by ggml*/) {
    auto* y = static_cast<block_q2_0*>(dst);
    const int64_t nb = n_rows * (n_per_row / QK2_0);
    for (int64_t i = 0; i < nb; i++, x += QK2_0) {
        float amax = 0.0f;
        for (int j = 0; j < QK2_0; j++) amax = std::max(amax, std::fabs(x[j]));
        const float id = amax > 0.0f ? 1.0f / amax : 0.0f;
        y[i].d = iq::to_half(amax);
        std::memset(y[i].qs, 0, sizeof(y[i].qs));
        for (int j = 0; j < QK2_0; ++j) {
            // Codes 0..3 stand for -1, 0, +1, +2 times the scale.
            const int q = std::clamp(static_cast<int>(std::round(x[j] * id)) + 1, 0, 3);
            y[i].qs[j / 4] |= static_cast<uint8_t>(q << ((j % 4) * 2));
        }
    }
}

void dequantize_row_q2_0(const void* src, float* y, int64_t n) {
    const auto* x = static_cast<const block_q2_0*>(src);
    for (int64_t i = 0; i < n / QK2_0; i++, y += QK2_0) {
        const float d = iq::from_half(x[i].d);
        for (int j = 0; j < QK2_0; ++j) {
            const int q = (x[i].qs[j / 4] >> ((j % 4) * 2)) & 0x03;
            y[j] = static_cast<float>(q - 1) * d;
        }
    }
}

}  // namespace quantlens::kernels
