// See dequant.h. Each Dequant<Block> below is the CPU dequantizer's expression for a weight
// of one block (quant/legacy.cpp, kquants.cpp, iq4.cpp, fp4.cpp, ternary.cpp), indexed
// directly instead of walked, so a thread computes 8 neighbouring weights and writes coalesce.
// Compiled with --fmad=false (CMakeLists.txt): a·b − c must round twice, as on the CPU.
#include "engine/cuda/dequant.h"

#include <algorithm>
#include <map>
#include <mutex>

#include "engine/cuda/cuda_common.cuh"
#pragma nv_diag_suppress 1675  // blocks.h's GCC pragma is for the host compiler
#include "quant/blocks.h"
#include "quant/tables_generated.h"

namespace quantlens::cuda {
namespace {

using namespace blocks;

// The lattice i-quants' grids and sign patterns in device memory (quant/tables_generated.h),
// uploaded once per device (iq_grids()).
struct IqGrids {
    const uint64_t *iq2xxs = nullptr, *iq2xs = nullptr, *iq2s = nullptr, *iq1s = nullptr;
    const uint32_t *iq3xxs = nullptr, *iq3s = nullptr;
    const uint8_t* ksigns = nullptr;
};

// What a kernel reads besides the blocks, passed by value: the 16 levels of IQ4_NL / IQ4_XS or
// MXFP4, and the grids.
struct Levels {
    int8_t v[16];
    IqGrids grids;
};

__device__ __forceinline__ float half_bits(uint16_t h) {
    return __half2float(__ushort_as_half(h));
}

// Q4_0 / Q5_0 (zero 8 / 16) and Q4_1 / Q5_1: the CPU's unpack_levels, for weight e; the
// 5-bit types add bit e of qh as the level's fifth bit.
__device__ __forceinline__ int nibble(const uint8_t* qs, int e) {
    return e < 16 ? (qs[e] & 0x0F) : (qs[e - 16] >> 4);
}
__device__ __forceinline__ int fifth_bit(const uint8_t* qh, int e) {
    return ((qh[e >> 3] >> (e & 7)) & 1) << 4;
}

// Dequant<Block>::group8(x, e0, levels, y): weights e0..e0+7 of block x (e0 a multiple of 8,
// so they share every sub-block scale, hoisted out of the loop).
template <typename Block>
struct Dequant;

// Q4_0 / Q5_0: (level − zero) · d; Q4_1 / Q5_1: level · d + m.
template <>
struct Dequant<block_q4_0> {
    static constexpr int kWeights = QK4_0;
    __device__ static void group8(const block_q4_0& x, int e0, const Levels&, float (&y)[8]) {
        const float d = half_bits(x.d);
#pragma unroll
        for (int j = 0; j < 8; ++j) y[j] = static_cast<float>(nibble(x.qs, e0 + j) - 8) * d;
    }
};
template <>
struct Dequant<block_q5_0> {
    static constexpr int kWeights = QK5_0;
    __device__ static void group8(const block_q5_0& x, int e0, const Levels&, float (&y)[8]) {
        const float d = half_bits(x.d);
#pragma unroll
        for (int j = 0; j < 8; ++j)
            y[j] = static_cast<float>((nibble(x.qs, e0 + j) | fifth_bit(x.qh, e0 + j)) - 16) * d;
    }
};
template <>
struct Dequant<block_q4_1> {
    static constexpr int kWeights = QK4_1;
    __device__ static void group8(const block_q4_1& x, int e0, const Levels&, float (&y)[8]) {
        const float d = half_bits(x.d), m = half_bits(x.m);
#pragma unroll
        for (int j = 0; j < 8; ++j) y[j] = static_cast<float>(nibble(x.qs, e0 + j)) * d + m;
    }
};
template <>
struct Dequant<block_q5_1> {
    static constexpr int kWeights = QK5_1;
    __device__ static void group8(const block_q5_1& x, int e0, const Levels&, float (&y)[8]) {
        const float d = half_bits(x.d), m = half_bits(x.m);
#pragma unroll
        for (int j = 0; j < 8; ++j)
            y[j] = static_cast<float>(nibble(x.qs, e0 + j) | fifth_bit(x.qh, e0 + j)) * d + m;
    }
};
template <>
struct Dequant<block_q8_0> {
    static constexpr int kWeights = QK8_0;
    __device__ static void group8(const block_q8_0& x, int e0, const Levels&, float (&y)[8]) {
        const float d = half_bits(x.d);
#pragma unroll
        for (int j = 0; j < 8; ++j) y[j] = static_cast<float>(x.qs[e0 + j]) * d;
    }
};

// K-quants: a 256-weight super-block. The CPU walks halves of 128 (Q2_K, Q3_K, Q6_K) or
// quarters of 64 (Q4_K, Q5_K); the index arithmetic recovers its loop variables, which are
// the same for 8 aligned weights except the position l.
template <>
struct Dequant<block_q2_K> {
    static constexpr int kWeights = QK_K;
    __device__ static void group8(const block_q2_K& x, int e0, const Levels&, float (&y)[8]) {
        const int n0 = e0 >> 7, r = e0 & 127, group = r >> 5, half = (r >> 4) & 1, l0 = r & 15;
        const uint8_t sc = x.scales[n0 * 8 + group * 2 + half];
        const float dl = half_bits(x.d) * static_cast<float>(sc & 0xF);
        const float ml = half_bits(x.dmin) * static_cast<float>(sc >> 4);
        const uint8_t* q = x.qs + n0 * 32 + 16 * half + l0;
#pragma unroll
        for (int j = 0; j < 8; ++j) y[j] = dl * static_cast<float>((q[j] >> (2 * group)) & 3) - ml;
    }
};
template <>
struct Dequant<block_q3_K> {
    static constexpr int kWeights = QK_K;
    __device__ static void group8(const block_q3_K& x, int e0, const Levels&, float (&y)[8]) {
        const int n0 = e0 >> 7, r = e0 & 127, group = r >> 5, half = (r >> 4) & 1, l0 = r & 31;
        const int k = n0 * 8 + group * 2 + half;  // q3_K_unpack_scale
        const int low = k < 8 ? x.scales[k] & 0xF : x.scales[k - 8] >> 4;
        const int scale = (low | (((x.scales[8 + k % 4] >> (2 * (k / 4))) & 3) << 4)) - 32;
        const float dl = half_bits(x.d) * static_cast<float>(scale);
        const int m = 1 << (n0 * 4 + group);
        const uint8_t* q = x.qs + n0 * 32 + l0;
        const uint8_t* hm = x.hmask + l0;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const int v = ((q[j] >> (2 * group)) & 3) - ((hm[j] & m) ? 0 : 4);
            y[j] = dl * static_cast<float>(v);
        }
    }
};
// Q4_K / Q5_K: sub-block j's 6-bit scale and min (scale_search.h's get_scale_min_k4).
__device__ __forceinline__ void scale_min_k4(int j, const uint8_t* q, int& sc, int& m) {
    if (j < 4) {
        sc = q[j] & 63;
        m = q[j + 4] & 63;
    } else {
        sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}
// Q4_K / Q5_K: sub-block 2c + high's step d · sc and min dmin · m, then level · step − min;
// Q5_K's qh adds each level's fifth bit (nullptr for Q4_K).
template <typename Block>
__device__ __forceinline__ void k4_group8(const Block& x, int e0, const uint8_t* qh,
                                          float (&y)[8]) {
    const int c = e0 >> 6, high = (e0 >> 5) & 1, l0 = e0 & 31;
    int sc = 0, mn = 0;
    scale_min_k4(2 * c + high, x.scales, sc, mn);
    const float d = half_bits(x.d) * static_cast<float>(sc);
    const float m = half_bits(x.dmin) * static_cast<float>(mn);
    const uint8_t* q = x.qs + 32 * c + l0;
    const int u = 1 << (2 * c + high);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
        int v = high ? q[j] >> 4 : q[j] & 0xF;
        if (qh && (qh[l0 + j] & u)) v += 16;
        y[j] = d * static_cast<float>(v) - m;
    }
}
template <>
struct Dequant<block_q4_K> {
    static constexpr int kWeights = QK_K;
    __device__ static void group8(const block_q4_K& x, int e0, const Levels&, float (&y)[8]) {
        k4_group8(x, e0, nullptr, y);
    }
};
template <>
struct Dequant<block_q5_K> {
    static constexpr int kWeights = QK_K;
    __device__ static void group8(const block_q5_K& x, int e0, const Levels&, float (&y)[8]) {
        k4_group8(x, e0, x.qh, y);
    }
};
template <>
struct Dequant<block_q6_K> {
    static constexpr int kWeights = QK_K;
    __device__ static void group8(const block_q6_K& x, int e0, const Levels&, float (&y)[8]) {
        const int n0 = e0 >> 7, quarter = (e0 >> 5) & 3, l0 = e0 & 31;
        const uint8_t* ql = x.ql + 64 * n0 + l0 + (quarter & 1) * 32;
        const uint8_t* qh = x.qh + 32 * n0 + l0;
        const int8_t sc = x.scales[8 * n0 + (l0 >> 4) + 2 * quarter];
        const float d = half_bits(x.d) * static_cast<float>(sc);  // (d · sc) · q, as the CPU
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const int low = quarter < 2 ? ql[j] & 0xF : ql[j] >> 4;
            const int q = (low | (((qh[j] >> (2 * quarter)) & 3) << 4)) - 32;
            y[j] = d * static_cast<float>(q);
        }
    }
};
template <>
struct Dequant<block_iq4_nl> {
    static constexpr int kWeights = QK4_NL;
    __device__ static void group8(const block_iq4_nl& x, int e0, const Levels& lv, float (&y)[8]) {
        const float d = half_bits(x.d);
#pragma unroll
        for (int j = 0; j < 8; ++j) y[j] = d * static_cast<float>(lv.v[nibble(x.qs, e0 + j)]);
    }
};
template <>
struct Dequant<block_iq4_xs> {
    static constexpr int kWeights = QK_K;
    __device__ static void group8(const block_iq4_xs& x, int e0, const Levels& lv, float (&y)[8]) {
        const int ib = e0 >> 5, j0 = e0 & 31;
        const int ls =
            ((x.scales_l[ib / 2] >> 4 * (ib % 2)) & 0xF) | (((x.scales_h >> 2 * ib) & 3) << 4);
        const float dl = half_bits(x.d) * static_cast<float>(ls - 32);
#pragma unroll
        for (int j = 0; j < 8; ++j)
            y[j] = dl * static_cast<float>(lv.v[nibble(x.qs + 16 * ib, j0 + j)]);
    }
};
template <>
struct Dequant<block_mxfp4> {
    static constexpr int kWeights = QK_MXFP4;
    __device__ static void group8(const block_mxfp4& x, int e0, const Levels& lv, float (&y)[8]) {
        // fp4.cpp's e8m0_to_float_half: half the E8M0 scale, subnormal below e = 2.
        const uint32_t bits = x.e < 2 ? (0x00200000u << x.e) : static_cast<uint32_t>(x.e - 1) << 23;
        const float d = __uint_as_float(bits);
#pragma unroll
        for (int j = 0; j < 8; ++j) y[j] = static_cast<float>(lv.v[nibble(x.qs, e0 + j)]) * d;
    }
};
template <>
struct Dequant<block_tq2_0> {
    static constexpr int kWeights = QK_K;
    __device__ static void group8(const block_tq2_0& x, int e0, const Levels&, float (&y)[8]) {
        const int group = e0 >> 7, shift = 2 * ((e0 >> 5) & 3), m0 = e0 & 31;
        const float d = half_bits(x.d);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const int q = (x.qs[32 * group + m0 + j] >> shift) & 3;
            y[j] = static_cast<float>(q - 1) * d;
        }
    }
};

// Lattice i-quants: 8 weights are one grid point (bytes of a 64-bit or two 32-bit entries),
// times a sub-block scale, with a sign bit each; the CPU's expression, per weight:
// (db · grid[j]) · ±1.
__device__ __forceinline__ float sign_of(uint8_t signs, int j) {
    return ((signs >> j) & 1) ? -1.f : 1.f;
}
__device__ __forceinline__ uint8_t grid_byte(uint64_t point, int j) {
    return static_cast<uint8_t>(point >> (8 * j));
}
// y[j] = (db · grid byte j) · ±1 for the 8 bytes of one grid point, or two 4-byte points.
__device__ __forceinline__ void lattice8(float db, uint64_t point, uint8_t signs, float (&y)[8]) {
#pragma unroll
    for (int j = 0; j < 8; ++j)
        y[j] = db * static_cast<float>(grid_byte(point, j)) * sign_of(signs, j);
}
__device__ __forceinline__ void lattice4x2(float db, uint32_t p1, uint32_t p2, uint8_t signs,
                                           float (&y)[8]) {
    lattice8(db, static_cast<uint64_t>(p2) << 32 | p1, signs, y);
}
__device__ __forceinline__ uint32_t load_u32(const uint8_t* p) {
    return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
           static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}
template <>
struct Dequant<block_iq2_xxs> {
    static constexpr int kWeights = QK_K;
    __device__ static void group8(const block_iq2_xxs& x, int e0, const Levels& t, float (&y)[8]) {
        const int ib32 = e0 >> 5, l = (e0 >> 3) & 3;
        const auto* q = reinterpret_cast<const uint8_t*>(x.qs + 4 * ib32);
        const uint32_t aux1 = load_u32(q + 4);
        const float db = half_bits(x.d) * (0.5f + static_cast<float>(aux1 >> 28)) * 0.25f;
        const uint64_t point = t.grids.iq2xxs[q[l]];
        const uint8_t signs = t.grids.ksigns[(aux1 >> 7 * l) & 127];
        lattice8(db, point, signs, y);
    }
};
template <>
struct Dequant<block_iq2_xs> {
    static constexpr int kWeights = QK_K;
    __device__ static void group8(const block_iq2_xs& x, int e0, const Levels& t, float (&y)[8]) {
        const int ib32 = e0 >> 5, l = (e0 >> 3) & 3;
        const int scale = (x.scales[ib32] >> (4 * (l / 2))) & 0xf;
        const float db = half_bits(x.d) * (0.5f + static_cast<float>(scale)) * 0.25f;
        const uint16_t q = x.qs[4 * ib32 + l];
        const uint64_t point = t.grids.iq2xs[q & 511];
        const uint8_t signs = t.grids.ksigns[q >> 9];
        lattice8(db, point, signs, y);
    }
};
template <>
struct Dequant<block_iq2_s> {
    static constexpr int kWeights = QK_K;
    __device__ static void group8(const block_iq2_s& x, int e0, const Levels& t, float (&y)[8]) {
        const int ib32 = e0 >> 5, l = (e0 >> 3) & 3;
        const int scale = (x.scales[ib32] >> (4 * (l / 2))) & 0xf;
        const float db = half_bits(x.d) * (0.5f + static_cast<float>(scale)) * 0.25f;
        const int index = x.qs[4 * ib32 + l] | ((x.qh[ib32] << (8 - 2 * l)) & 0x300);
        const uint64_t point = t.grids.iq2s[index];
        const uint8_t signs = x.qs[QK_K / 8 + 4 * ib32 + l];
        lattice8(db, point, signs, y);
    }
};
template <>
struct Dequant<block_iq3_xxs> {
    static constexpr int kWeights = QK_K;
    __device__ static void group8(const block_iq3_xxs& x, int e0, const Levels& t, float (&y)[8]) {
        const int ib32 = e0 >> 5, l = (e0 >> 3) & 3;
        const uint32_t aux = load_u32(x.qs + QK_K / 4 + 4 * ib32);
        const float db = half_bits(x.d) * (0.5f + static_cast<float>(aux >> 28)) * 0.5f;
        const uint8_t signs = t.grids.ksigns[(aux >> 7 * l) & 127];
        const uint32_t p1 = t.grids.iq3xxs[x.qs[8 * ib32 + 2 * l]];
        const uint32_t p2 = t.grids.iq3xxs[x.qs[8 * ib32 + 2 * l + 1]];
        lattice4x2(db, p1, p2, signs, y);
    }
};
template <>
struct Dequant<block_iq3_s> {
    static constexpr int kWeights = QK_K;
    __device__ static void group8(const block_iq3_s& x, int e0, const Levels& t, float (&y)[8]) {
        const int b = e0 >> 5, l = (e0 >> 3) & 3, half = b & 1;
        const int scale = (x.scales[b / 2] >> (4 * half)) & 0xf;
        const float db = half_bits(x.d) * static_cast<float>(1 + 2 * scale);
        const uint8_t* qs = x.qs + 8 * b;
        const int qh = x.qh[b];
        const uint32_t p1 = t.grids.iq3s[qs[2 * l] | ((qh << (8 - 2 * l)) & 256)];
        const uint32_t p2 = t.grids.iq3s[qs[2 * l + 1] | ((qh << (7 - 2 * l)) & 256)];
        const uint8_t signs = x.signs[4 * b + l];
        lattice4x2(db, p1, p2, signs, y);
    }
};
constexpr float kIq1Delta = 0.125f;  // quant/iq_common.h's (that header is host-only)
template <>
struct Dequant<block_iq1_s> {
    static constexpr int kWeights = QK_K;
    __device__ static void group8(const block_iq1_s& x, int e0, const Levels& t, float (&y)[8]) {
        const int ib = e0 >> 5, l = (e0 >> 3) & 3;
        const uint16_t qh = x.qh[ib];
        const float dl = half_bits(x.d) * static_cast<float>(2 * ((qh >> 12) & 7) + 1);
        const float delta = qh & 0x8000 ? -kIq1Delta : kIq1Delta;
        const uint64_t point = t.grids.iq1s[x.qs[4 * ib + l] | (((qh >> 3 * l) & 7) << 8)];
#pragma unroll
        for (int j = 0; j < 8; ++j)
            y[j] = dl * (static_cast<float>(static_cast<int8_t>(grid_byte(point, j))) + delta);
    }
};
template <>
struct Dequant<block_iq1_m> {
    static constexpr int kWeights = QK_K;
    __device__ static void group8(const block_iq1_m& x, int e0, const Levels& t, float (&y)[8]) {
        const int ib = e0 >> 5, l = (e0 >> 3) & 3;
        uint16_t sc[4];
        for (int i = 0; i < 4; ++i)
            sc[i] = static_cast<uint16_t>(x.scales[2 * i] | x.scales[2 * i + 1] << 8);
        const auto s16 = static_cast<uint16_t>((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) |
                                               ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000));
        const int shift = 6 * (ib % 2) + (l < 2 ? 0 : 3);
        const float dl = half_bits(s16) * static_cast<float>(2 * ((sc[ib / 2] >> shift) & 0x7) + 1);
        const uint8_t qh = x.qh[2 * ib + l / 2];
        const int index = x.qs[4 * ib + l] | ((qh << (l % 2 ? 4 : 8)) & 0x700);
        const float delta = qh & (l % 2 ? 0x80 : 0x08) ? -kIq1Delta : kIq1Delta;
        const uint64_t point = t.grids.iq1s[index];
#pragma unroll
        for (int j = 0; j < 8; ++j)
            y[j] = dl * (static_cast<float>(static_cast<int8_t>(grid_byte(point, j))) + delta);
    }
};

// A thread dequantizes 8 consecutive weights of a row (one 32-weight group holds them all) and
// stores them as one 16-byte (two for F32) vector; rows run along y. 32-bit index arithmetic:
// 64-bit division per weight made the first version ~10× slower than memory bandwidth.
constexpr int kPerThread = 8;

template <typename T>
__device__ __forceinline__ void store8(T* dst, const T (&v)[kPerThread]) {
    if constexpr (sizeof(T) == 2) {
        uint4 packed;
        memcpy(&packed, v, sizeof packed);
        *reinterpret_cast<uint4*>(dst) = packed;
    } else {
        float4 a, b;
        memcpy(&a, v, sizeof a);
        memcpy(&b, v + 4, sizeof b);
        reinterpret_cast<float4*>(dst)[0] = a;
        reinterpret_cast<float4*>(dst)[1] = b;
    }
}

template <typename Block, typename T>
__global__ void dequantize_rows_k(const uint8_t* __restrict__ src, size_t row_bytes, int n_per_row,
                                  const int32_t* __restrict__ rows, int64_t row0, int64_t n_rows,
                                  T* __restrict__ dst, Levels levels) {
    constexpr int kWeights = Dequant<Block>::kWeights;
    const int first = (blockIdx.x * blockDim.x + threadIdx.x) * kPerThread;
    if (first >= n_per_row) return;
    const int e0 = first % kWeights;
    for (int64_t r = blockIdx.y; r < n_rows; r += gridDim.y) {
        const int64_t src_row = rows ? rows[r] : row0 + r;
        const Block& block =
            reinterpret_cast<const Block*>(src + src_row * row_bytes)[first / kWeights];
        float y[kPerThread];
        Dequant<Block>::group8(block, e0, levels, y);
        T out[kPerThread];
#pragma unroll
        for (int j = 0; j < kPerThread; ++j) out[j] = from_f32<T>(y[j]);
        store8(dst + r * n_per_row + first, out);
    }
}

template <typename Block>
void launch_typed(const void* src, size_t row_bytes, int64_t n_per_row, const int32_t* rows,
                  int64_t row0, int64_t n_rows, void* dst, Dtype dt, const Levels& levels) {
    if (n_rows == 0 || n_per_row == 0) return;
    const auto* s = static_cast<const uint8_t*>(src);
    constexpr int kThreads = 128;
    const dim3 grid(static_cast<unsigned>((n_per_row / kPerThread + kThreads - 1) / kThreads),
                    static_cast<unsigned>(std::min<int64_t>(n_rows, 65535)));
    const int cols = static_cast<int>(n_per_row);
    switch (dt) {
        case Dtype::F32:
            dequantize_rows_k<Block><<<grid, kThreads>>>(s, row_bytes, cols, rows, row0, n_rows,
                                                         static_cast<float*>(dst), levels);
            break;
        case Dtype::F16:
            dequantize_rows_k<Block><<<grid, kThreads>>>(s, row_bytes, cols, rows, row0, n_rows,
                                                         static_cast<__half*>(dst), levels);
            break;
        case Dtype::BF16:
            dequantize_rows_k<Block><<<grid, kThreads>>>(s, row_bytes, cols, rows, row0, n_rows,
                                                         static_cast<__nv_bfloat16*>(dst), levels);
            break;
    }
    QL_CUDA_LAUNCH();
}

// The grids on the current device, uploaded on first use and kept for the process (33 KB).
IqGrids iq_grids() {
    static std::mutex mutex;
    static std::map<int, IqGrids> by_device;
    int device = 0;
    QL_CUDA(cudaGetDevice(&device));
    std::lock_guard<std::mutex> lock(mutex);
    auto [it, inserted] = by_device.try_emplace(device);
    if (inserted) {
        IqGrids& g = it->second;
        g.iq2xxs = upload_for_process(tables::iq2xxs_grid, 256);
        g.iq2xs = upload_for_process(tables::iq2xs_grid, 512);
        g.iq2s = upload_for_process(tables::iq2s_grid, 1024);
        g.iq1s = upload_for_process(tables::iq1s_grid, 2048);
        g.iq3xxs = upload_for_process(tables::iq3xxs_grid, 256);
        g.iq3s = upload_for_process(tables::iq3s_grid, 512);
        g.ksigns = upload_for_process(tables::ksigns_iq2xs, 128);
    }
    return it->second;
}

// What the kernel of `type` reads besides its blocks.
Levels levels_for(GgmlType type) {
    Levels l{};
    const int8_t* table = type == GgmlType::MXFP4 ? tables::kvalues_fp4 : tables::kvalues_iq4nl;
    for (int i = 0; i < 16; ++i) l.v[i] = table[i];
    switch (type) {  // the lattice types read grids (a lookup and a lock: not for the others)
        case GgmlType::IQ2_XXS:
        case GgmlType::IQ2_XS:
        case GgmlType::IQ2_S:
        case GgmlType::IQ3_XXS:
        case GgmlType::IQ3_S:
        case GgmlType::IQ1_S:
        case GgmlType::IQ1_M:
            l.grids = iq_grids();
            break;
        default:
            break;
    }
    return l;
}

template <typename Block>
struct Tag {
    using type = Block;
};

// Calls f(Tag<Block>{}) with the block layout of `type`; false when it has no kernel.
template <typename F>
bool with_block(GgmlType type, F&& f) {
    switch (type) {
        case GgmlType::Q4_0:
            return f(Tag<block_q4_0>{}), true;
        case GgmlType::Q4_1:
            return f(Tag<block_q4_1>{}), true;
        case GgmlType::Q5_0:
            return f(Tag<block_q5_0>{}), true;
        case GgmlType::Q5_1:
            return f(Tag<block_q5_1>{}), true;
        case GgmlType::Q8_0:
            return f(Tag<block_q8_0>{}), true;
        case GgmlType::Q2_K:
            return f(Tag<block_q2_K>{}), true;
        case GgmlType::Q3_K:
            return f(Tag<block_q3_K>{}), true;
        case GgmlType::Q4_K:
            return f(Tag<block_q4_K>{}), true;
        case GgmlType::Q5_K:
            return f(Tag<block_q5_K>{}), true;
        case GgmlType::Q6_K:
            return f(Tag<block_q6_K>{}), true;
        case GgmlType::IQ4_NL:
            return f(Tag<block_iq4_nl>{}), true;
        case GgmlType::IQ4_XS:
            return f(Tag<block_iq4_xs>{}), true;
        case GgmlType::MXFP4:
            return f(Tag<block_mxfp4>{}), true;
        case GgmlType::TQ2_0:
            return f(Tag<block_tq2_0>{}), true;
        case GgmlType::IQ2_XXS:
            return f(Tag<block_iq2_xxs>{}), true;
        case GgmlType::IQ2_XS:
            return f(Tag<block_iq2_xs>{}), true;
        case GgmlType::IQ2_S:
            return f(Tag<block_iq2_s>{}), true;
        case GgmlType::IQ3_XXS:
            return f(Tag<block_iq3_xxs>{}), true;
        case GgmlType::IQ3_S:
            return f(Tag<block_iq3_s>{}), true;
        case GgmlType::IQ1_S:
            return f(Tag<block_iq1_s>{}), true;
        case GgmlType::IQ1_M:
            return f(Tag<block_iq1_m>{}), true;
        default:
            return false;
    }
}

}  // namespace

bool gpu_dequant_supported(GgmlType type) {
    return with_block(type, [](auto) {});
}

void launch_dequantize_rows(GgmlType type, const void* src, size_t row_bytes, int64_t n_per_row,
                            const int32_t* rows, int64_t row0, int64_t n_rows, void* dst,
                            Dtype dt) {
    const Levels levels = levels_for(type);
    const bool known = with_block(type, [&](auto tag) {
        using Block = typename decltype(tag)::type;
        launch_typed<Block>(src, row_bytes, n_per_row, rows, row0, n_rows, dst, dt, levels);
    });
    if (!known)
        check_cuda(cudaErrorInvalidValue, "launch_dequantize_rows: a type without a kernel");
}

}  // namespace quantlens::cuda
