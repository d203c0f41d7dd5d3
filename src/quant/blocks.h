// On-disk block layouts of every ggml quantization format, byte-compatible with ggml's
// `block_*` structs (ggml-common.h). Frozen: each size is pinned by a static_assert, so a
// layout change is a compile error rather than a silently different file.
//
// Half-precision fields are stored as raw IEEE binary16 bits (uint16_t); convert them with
// core/half.h. All multi-byte fields are little-endian, as on every machine ggml supports.
//
// Every kernel translation unit includes this header, which also turns off floating-point
// contraction (a*b+c → fma): the reference quantizers are defined by separately rounded
// multiplies and adds, and -march=native would otherwise let the compiler fuse them and
// change the bytes.
#pragma once

#include <cstdint>

#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace quantlens::blocks {

inline constexpr int QK4_0 = 32;
inline constexpr int QK4_1 = 32;
inline constexpr int QK5_0 = 32;
inline constexpr int QK5_1 = 32;
inline constexpr int QK8_0 = 32;
inline constexpr int QK_K = 256;         // K-quant and most IQ super-blocks
inline constexpr int K_SCALE_SIZE = 12;  // packed 6-bit scales + mins of Q4_K/Q5_K
inline constexpr int QK4_NL = 32;
inline constexpr int QK_MXFP4 = 32;
inline constexpr int QK_NVFP4 = 64;
inline constexpr int QK_NVFP4_SUB = 16;
inline constexpr int QK1_0 = 128;
inline constexpr int QK2_0 = 64;

using half = uint16_t;  // IEEE binary16 bits

// ---- legacy formats: 32 weights, one scale (and a min for the _1 types) ----
struct block_q4_0 {
    half d;
    uint8_t qs[QK4_0 / 2];  // nibbles: low = weight j, high = weight j + 16
};
struct block_q4_1 {
    half d;
    half m;
    uint8_t qs[QK4_1 / 2];
};
struct block_q5_0 {
    half d;
    uint8_t qh[4];  // 5th bit of each weight, bit j = weight j
    uint8_t qs[QK5_0 / 2];
};
struct block_q5_1 {
    half d;
    half m;
    uint8_t qh[4];
    uint8_t qs[QK5_1 / 2];
};
struct block_q8_0 {
    half d;
    int8_t qs[QK8_0];
};
struct block_q8_1 {
    half d;
    half s;  // d * sum(qs)
    int8_t qs[QK8_0];
};

// ---- K-quants: 256-weight super-blocks with quantized sub-block scales ----
struct block_q2_K {
    uint8_t scales[QK_K / 16];  // low nibble scale, high nibble min, per 16 weights
    uint8_t qs[QK_K / 4];
    half d;
    half dmin;
};
struct block_q3_K {
    uint8_t hmask[QK_K / 8];  // high bit
    uint8_t qs[QK_K / 4];     // low 2 bits
    uint8_t scales[12];       // 16 signed 6-bit scales, offset 32
    half d;
};
struct block_q4_K {
    half d;
    half dmin;
    uint8_t scales[K_SCALE_SIZE];  // 8 scales + 8 mins, 6 bits each
    uint8_t qs[QK_K / 2];
};
struct block_q5_K {
    half d;
    half dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
};
struct block_q6_K {
    uint8_t ql[QK_K / 2];  // low 4 bits
    uint8_t qh[QK_K / 4];  // high 2 bits
    int8_t scales[QK_K / 16];
    half d;
};
struct block_q8_K {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
};

// ---- i-quants ----
struct block_iq2_xxs {
    half d;
    uint16_t qs[QK_K / 8];
};
struct block_iq2_xs {
    half d;
    uint16_t qs[QK_K / 8];
    uint8_t scales[QK_K / 32];
};
struct block_iq2_s {
    half d;
    uint8_t qs[QK_K / 4];
    uint8_t qh[QK_K / 32];
    uint8_t scales[QK_K / 32];
};
struct block_iq3_xxs {
    half d;
    uint8_t qs[3 * QK_K / 8];
};
struct block_iq3_s {
    half d;
    uint8_t qs[QK_K / 4];
    uint8_t qh[QK_K / 32];
    uint8_t signs[QK_K / 8];
    uint8_t scales[QK_K / 64];
};
struct block_iq1_s {
    half d;
    uint8_t qs[QK_K / 8];
    uint16_t qh[QK_K / 32];
};
struct block_iq1_m {
    uint8_t qs[QK_K / 8];
    uint8_t qh[QK_K / 16];
    uint8_t scales[QK_K / 32];  // also holds the super-block scale, 4 bits at a time
};
struct block_iq4_nl {
    half d;
    uint8_t qs[QK4_NL / 2];
};
struct block_iq4_xs {
    half d;
    uint16_t scales_h;
    uint8_t scales_l[QK_K / 64];
    uint8_t qs[QK_K / 2];
};

// ---- ternary ----
struct block_tq1_0 {
    uint8_t qs[(QK_K - 4 * QK_K / 64) / 5];  // 5 trits per byte
    uint8_t qh[QK_K / 64];                   // 4 trits per byte
    half d;
};
struct block_tq2_0 {
    uint8_t qs[QK_K / 4];  // 2 bits per weight
    half d;
};

// ---- floating-point micro-formats and 1/2-bit ----
struct block_mxfp4 {
    uint8_t e;  // E8M0 shared exponent
    uint8_t qs[QK_MXFP4 / 2];
};
struct block_nvfp4 {
    uint8_t d[QK_NVFP4 / QK_NVFP4_SUB];  // UE4M3 scale per 16 weights
    uint8_t qs[QK_NVFP4 / 2];
};
struct block_q1_0 {
    half d;
    uint8_t qs[QK1_0 / 8];
};
struct block_q2_0 {
    half d;
    uint8_t qs[QK2_0 / 4];
};

static_assert(sizeof(block_q4_0) == 18);
static_assert(sizeof(block_q4_1) == 20);
static_assert(sizeof(block_q5_0) == 22);
static_assert(sizeof(block_q5_1) == 24);
static_assert(sizeof(block_q8_0) == 34);
static_assert(sizeof(block_q8_1) == 36);
static_assert(sizeof(block_q2_K) == 84);
static_assert(sizeof(block_q3_K) == 110);
static_assert(sizeof(block_q4_K) == 144);
static_assert(sizeof(block_q5_K) == 176);
static_assert(sizeof(block_q6_K) == 210);
static_assert(sizeof(block_q8_K) == 292);
static_assert(sizeof(block_iq2_xxs) == 66);
static_assert(sizeof(block_iq2_xs) == 74);
static_assert(sizeof(block_iq2_s) == 82);
static_assert(sizeof(block_iq3_xxs) == 98);
static_assert(sizeof(block_iq3_s) == 110);
static_assert(sizeof(block_iq1_s) == 50);
static_assert(sizeof(block_iq1_m) == 56);
static_assert(sizeof(block_iq4_nl) == 18);
static_assert(sizeof(block_iq4_xs) == 136);
static_assert(sizeof(block_tq1_0) == 54);
static_assert(sizeof(block_tq2_0) == 66);
static_assert(sizeof(block_mxfp4) == 17);
static_assert(sizeof(block_nvfp4) == 36);
static_assert(sizeof(block_q1_0) == 18);
static_assert(sizeof(block_q2_0) == 18);

}  // namespace quantlens::blocks
