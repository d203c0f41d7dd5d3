// TQ1_0 and TQ2_0: ternary weights {-1, 0, +1} times one fp16 scale (the block's absolute
// maximum) per 256 weights, as ggml stores BitNet b1.58 / TriLM models. TQ1_0 packs five
// trits per byte as a base-3 fraction of 256 (so a trit is read back with a multiply and a
// shift), TQ2_0 packs four 2-bit codes per byte. Importance weights do not apply.
#include <array>

#include "quant/block_rows.h"
#include "quant/iq_common.h"
#include "quant/kernels.h"

namespace quantlens::kernels {
namespace {

using namespace iq;
using blocks::block_tq1_0;
using blocks::block_tq2_0;
using blocks::QK_K;

// Scale = absolute maximum of the block, as fp16; returns the inverse used for rounding.
float ternary_scale(const float* x, uint16_t* d) {
    float amax = 0.0f;
    for (int j = 0; j < QK_K; j++) amax = std::max(amax, std::fabs(x[j]));
    *d = to_half(amax);
    return amax ? 1.0f / amax : 0.0f;
}

int trit(float x, float id) {
    return static_cast<int>(std::lround(x * id)) + 1;
}

// Five trits (most significant first) as the fraction q/243 scaled to a byte, rounded up
// so that multiplying by 3 and keeping the high byte recovers each trit.
uint8_t pack_trits(uint8_t q) {
    return static_cast<uint8_t>((static_cast<uint16_t>(q) * 256 + 242) / 243);
}

// Bytes [begin, end) of qs, `width` at a time: each byte the five trits of one column of a
// 5 × width slab of x (rows `width` apart); x moves past the slabs.
void pack_trit_slabs(const float*& x, uint8_t* qs, size_t begin, size_t end, size_t width,
                     float id) {
    for (size_t j = begin; j < end; j += width) {
        for (size_t m = 0; m < width; ++m) {
            uint8_t q = 0;
            for (size_t n = 0; n < 5; ++n)
                q = static_cast<uint8_t>(q * 3 + trit(x[m + n * width], id));
            qs[j + m] = pack_trits(q);
        }
        x += 5 * width;
    }
}

void tq1_0_block(const float* x, const float* /*importance: unused by ggml*/, block_tq1_0& y) {
    constexpr size_t kQs = sizeof(y.qs);      // 48
    constexpr size_t kQh = sizeof(y.qh);      // 4
    constexpr size_t kWide = kQs - kQs % 32;  // bytes packed along 32 columns
    const float id = ternary_scale(x, &y.d);
    pack_trit_slabs(x, y.qs, 0, kWide, 32, id);
    pack_trit_slabs(x, y.qs, kWide, kQs, 16, id);
    for (size_t j = 0; j < kQh; ++j) {
        uint8_t q = 0;
        for (size_t m = 0; m < 4; ++m) q = static_cast<uint8_t>(q * 3 + trit(x[j + m * kQh], id));
        q = static_cast<uint8_t>(q * 3);  // four trits occupy the top of a five-trit byte
        y.qh[j] = pack_trits(q);
    }
}

// The trit a TQ1_0 byte holds at position n (0 = most significant).
int16_t unpack_trit(uint8_t byte, int n) {
    static constexpr uint8_t kPow3[6] = {1, 3, 9, 27, 81, 243};
    const uint8_t q = static_cast<uint8_t>(byte * kPow3[n]);
    return static_cast<int16_t>((static_cast<uint16_t>(q) * 3) >> 8);
}

void tq1_0_dequantize(const block_tq1_0& x, float* y) {
    constexpr size_t kQs = sizeof(x.qs);
    constexpr size_t kWide = kQs - kQs % 32;
    const float d = from_half(x.d);
    for (const auto [begin, end, width] :
         {std::array<size_t, 3>{0, kWide, 32}, std::array<size_t, 3>{kWide, kQs, 16}})
        for (size_t j = begin; j < end; j += width)
            for (int k = 0; k < 5; ++k)
                for (size_t m = 0; m < width; ++m)
                    *y++ = static_cast<float>(unpack_trit(x.qs[j + m], k) - 1) * d;
    for (int k = 0; k < 4; ++k)
        for (size_t j = 0; j < sizeof(x.qh); ++j)
            *y++ = static_cast<float>(unpack_trit(x.qh[j], k) - 1) * d;
}

void tq2_0_block(const float* x, const float* /*importance: unused by ggml*/, block_tq2_0& y) {
    const float id = ternary_scale(x, &y.d);
    for (size_t j = 0; j < sizeof(y.qs); j += 32) {
        for (size_t m = 0; m < 32; ++m) {
            uint8_t q = 0;
            for (size_t n = 0; n < 4; ++n)
                q = static_cast<uint8_t>(q + ((trit(x[m + n * 32], id) & 3) << (2 * n)));
            y.qs[j + m] = q;
        }
        x += 4 * 32;
    }
}

void tq2_0_dequantize(const block_tq2_0& x, float* y) {
    const float d = from_half(x.d);
    for (size_t j = 0; j < sizeof(x.qs); j += 32)
        for (int l = 0; l < 4; ++l)
            for (size_t m = 0; m < 32; ++m) {
                const int8_t q = static_cast<int8_t>((x.qs[j + m] >> (l * 2)) & 3);
                *y++ = static_cast<float>(q - 1) * d;
            }
}

}  // namespace

QL_BLOCK_KERNELS(tq1_0, block_tq1_0, QK_K, tq1_0_block, tq1_0_dequantize)
QL_BLOCK_KERNELS(tq2_0, block_tq2_0, QK_K, tq2_0_block, tq2_0_dequantize)

}  // namespace quantlens::kernels
