// AVX2 + FMA dot products (vec_dot.h), each bit-identical to its scalar twin in
// vec_dot.cpp: the same int32 lane sums (lane k = positions 4k..4k+3 of a 32-value chunk),
// the same fused multiply-adds per block, the same final reduction (detail::hsum8).
// Compiled with target attributes so the file builds for any x86-64; vec_dot.cpp calls these
// only after __builtin_cpu_supports("avx2") and ("fma").
#include "quant/vec_dot_impl.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <type_traits>

#include "core/half.h"
#include "quant/tables_generated.h"

#define QL_AVX2 __attribute__((target("avx2,fma,f16c")))

// The one-row (DotFn) and four-row (Dot4Fn) entry points of a kernel T_rows<R> written for R
// activation rows at once: the four-row result for each row equals the one-row result.
#define QL_AVX2_ROWS_ENTRY_POINTS(T)                                                       \
    QL_AVX2 float dot_##T##_avx2(const void* w, const void* act, int64_t n) {              \
        float out;                                                                         \
        T##_rows<1>(w, static_cast<const uint8_t*>(act), 0, n, &out);                      \
        return out;                                                                        \
    }                                                                                      \
    QL_AVX2 void dot4_##T##_avx2(const void* w, const void* act, size_t stride, int64_t n, \
                                 float* out) {                                             \
        T##_rows<4>(w, static_cast<const uint8_t*>(act), stride, n, out);                  \
    }

namespace quantlens::vec_dot::detail {
namespace {

using namespace blocks;

// F16C conversion: exact, so equal to core/half.h's f16_to_f32 (and much faster).
QL_AVX2 inline float fp16(uint16_t h) {
    return _cvtsh_ss(h);
}

QL_AVX2 inline __m256i load32(const void* p) {
    return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}

// 16 packed nibble bytes → 32 bytes: weights 0..15 (low nibbles), then 16..31 (high).
QL_AVX2 inline __m256i unpack_nibbles16(const uint8_t* p) {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i mask = _mm_set1_epi8(0x0F);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(bytes, 4), mask),
                            _mm_and_si128(bytes, mask));
}

// int16 pair sums of signed x · signed y (|x·y pair| < 2^15 for every format here).
QL_AVX2 inline __m256i pairs_i8(__m256i x, __m256i y) {
    return _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

// int32 lanes of signed x · signed y.
QL_AVX2 inline __m256i lanes_i8(__m256i x, __m256i y) {
    return _mm256_madd_epi16(pairs_i8(x, y), _mm256_set1_epi16(1));
}

// Scale vector for one 32-byte chunk: bytes 0..15 use lo, 16..31 use hi (int16 pairs).
QL_AVX2 inline __m256i chunk_scales(int lo, int hi) {
    return _mm256_set_m128i(_mm_set1_epi16(static_cast<int16_t>(hi)),
                            _mm_set1_epi16(static_cast<int16_t>(lo)));
}

// detail::hsum8 in registers: (a_i + a_{i+4}), then pairs, then the last two.
QL_AVX2 inline float reduce(__m256 acc) {
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

QL_AVX2 inline __m256i bit_set_bytes(__m256i bits, int bit) {
    const __m256i mask = _mm256_set1_epi8(static_cast<char>(1 << bit));
    return _mm256_cmpeq_epi8(_mm256_and_si256(bits, mask), mask);
}

}  // namespace

// R activation rows (F16 values held as floats) against one F16 weight row.
template <int R>
QL_AVX2 inline void f16_rows(const void* w, const uint8_t* act, size_t stride, int64_t n,
                             float* out) {
    const auto* x = static_cast<const uint16_t*>(w);
    const int64_t np = n & ~int64_t{31};
    __m256 sum[R][4];
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < 4; ++j) sum[r][j] = _mm256_setzero_ps();
    for (int64_t i = 0; i < np; i += 32)
        for (int j = 0; j < 4; ++j) {
            const __m256 ax =
                _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i + 8 * j)));
            for (int r = 0; r < R; ++r) {
                const auto* y = reinterpret_cast<const float*>(act + r * stride);
                sum[r][j] = _mm256_fmadd_ps(ax, _mm256_loadu_ps(y + i + 8 * j), sum[r][j]);
            }
        }
    for (int r = 0; r < R; ++r) {
        const auto* y = reinterpret_cast<const float*>(act + r * stride);
        const __m256 s =
            _mm256_add_ps(_mm256_add_ps(sum[r][0], sum[r][2]), _mm256_add_ps(sum[r][1], sum[r][3]));
        const __m128 t0 = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        const __m128 t1 = _mm_hadd_ps(t0, t0);
        double sumf = _mm_cvtss_f32(_mm_hadd_ps(t1, t1));
        for (int64_t i = np; i < n; ++i) sumf += static_cast<double>(fp16(x[i]) * y[i]);
        out[r] = static_cast<float>(sumf);
    }
}

QL_AVX2 float dot_f16_avx2(const void* w, const void* act, int64_t n) {
    float out;
    f16_rows<1>(w, static_cast<const uint8_t*>(act), 0, n, &out);
    return out;
}
QL_AVX2 void dot4_f16_avx2(const void* w, const void* act, size_t stride, int64_t n, float* out) {
    // two rows at a time: eight accumulators stay in registers
    const auto* a = static_cast<const uint8_t*>(act);
    f16_rows<2>(w, a, stride, n, out);
    f16_rows<2>(w, a + 2 * stride, stride, n, out + 2);
}

QL_AVX2 float dot_bf16_avx2(const void* w, const void* act, int64_t n) {
    const auto* x = static_cast<const uint16_t*>(w);
    const auto* y = static_cast<const float*>(act);
    const int64_t np = n & ~int64_t{31};
    __m256 c[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
    for (int64_t i = 0; i < np; i += 32)
        for (int j = 0; j < 4; ++j) {
            const __m256 wx = _mm256_castsi256_ps(_mm256_slli_epi32(
                _mm256_cvtepu16_epi32(
                    _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i + 8 * j))),
                16));
            c[j] = _mm256_fmadd_ps(wx, _mm256_loadu_ps(y + i + 8 * j), c[j]);
        }
    double sumf = reduce(_mm256_add_ps(_mm256_add_ps(c[0], c[2]), _mm256_add_ps(c[1], c[3])));
    for (int64_t i = np; i < n; ++i) sumf += static_cast<double>(bf16_to_f32(x[i]) * y[i]);
    return static_cast<float>(sumf);
}

QL_AVX2 inline __m256 load_f16x8(const uint16_t* x) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x)));
}
QL_AVX2 inline __m256 load_bf16x8(const uint16_t* x) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(
        _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x))), 16));
}

template <bool bf16>
QL_AVX2 inline float dot_lanes_avx2(const void* w, const void* act, int64_t n) {
    const auto* x = static_cast<const uint16_t*>(w);
    const auto* y = static_cast<const float*>(act);
    __m256 c = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += 8)
        c = _mm256_fmadd_ps(bf16 ? load_bf16x8(x + i) : load_f16x8(x + i), _mm256_loadu_ps(y + i),
                            c);
    return reduce(c);
}

template <bool bf16>
QL_AVX2 inline void dot4_lanes_avx2(const void* w, const void* act, size_t stride, int64_t n,
                                    float* out) {
    const auto* x = static_cast<const uint16_t*>(w);
    const auto* y = static_cast<const uint8_t*>(act);
    __m256 c[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
    for (int64_t i = 0; i < n; i += 8) {
        const __m256 wx = bf16 ? load_bf16x8(x + i) : load_f16x8(x + i);
        for (int r = 0; r < 4; ++r)
            c[r] = _mm256_fmadd_ps(
                wx, _mm256_loadu_ps(reinterpret_cast<const float*>(y + r * stride) + i), c[r]);
    }
    for (int r = 0; r < 4; ++r) out[r] = reduce(c[r]);
}

QL_AVX2 float dot_f16_lanes_avx2(const void* w, const void* act, int64_t n) {
    return dot_lanes_avx2<false>(w, act, n);
}
QL_AVX2 float dot_bf16_lanes_avx2(const void* w, const void* act, int64_t n) {
    return dot_lanes_avx2<true>(w, act, n);
}
QL_AVX2 void dot4_f16_lanes_avx2(const void* w, const void* act, size_t stride, int64_t n,
                                 float* out) {
    dot4_lanes_avx2<false>(w, act, stride, n, out);
}
QL_AVX2 void dot4_bf16_lanes_avx2(const void* w, const void* act, size_t stride, int64_t n,
                                  float* out) {
    dot4_lanes_avx2<true>(w, act, stride, n, out);
}

QL_AVX2 float dot_q4_0_avx2(const void* w, const void* act, int64_t n) {
    const auto* x = static_cast<const block_q4_0*>(w);
    const auto* y = static_cast<const block_q8_0*>(act);
    __m256 acc = _mm256_setzero_ps();
    const __m256i eight = _mm256_set1_epi8(8);
    for (int64_t b = 0; b < n / QK8_0; ++b) {
        const __m256 d = _mm256_set1_ps(fp16(x[b].d) * fp16(y[b].d));
        const __m256i qx = _mm256_sub_epi8(unpack_nibbles16(x[b].qs), eight);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(lanes_i8(qx, load32(y[b].qs))), acc);
    }
    return reduce(acc);
}

namespace {

// 32 bits → 32 bytes, 0xFF where bit i of `bits` is set (byte i).
QL_AVX2 inline __m256i bytes_from_bits(const uint8_t* p) {
    uint32_t bits;
    std::memcpy(&bits, p, 4);
    const __m256i spread =
        _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)),
                            _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2,
                                             2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
    const __m256i mask = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
    return _mm256_cmpeq_epi8(_mm256_and_si256(spread, mask), mask);
}

// Q4_1/Q5_1: unsigned weights, the min term m·s summed apart in block order.
template <bool five>
QL_AVX2 inline float legacy1_dot(const void* w, const void* act, int64_t n) {
    using Block = std::conditional_t<five, block_q5_1, block_q4_1>;
    const auto* x = static_cast<const Block*>(w);
    const auto* y = static_cast<const block_q8_1*>(act);
    __m256 acc = _mm256_setzero_ps();
    float summs = 0.0f;
    for (int64_t b = 0; b < n / 32; ++b) {
        summs += fp16(x[b].m) * fp16(y[b].s);
        __m256i qx = unpack_nibbles16(x[b].qs);
        if constexpr (five)
            qx = _mm256_or_si256(
                qx, _mm256_and_si256(bytes_from_bits(x[b].qh), _mm256_set1_epi8(0x10)));
        const __m256i lanes =
            _mm256_madd_epi16(_mm256_maddubs_epi16(qx, load32(y[b].qs)), _mm256_set1_epi16(1));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16(x[b].d) * fp16(y[b].d)),
                              _mm256_cvtepi32_ps(lanes), acc);
    }
    return reduce(acc) + summs;
}

}  // namespace

QL_AVX2 float dot_q4_1_avx2(const void* w, const void* act, int64_t n) {
    return legacy1_dot<false>(w, act, n);
}
QL_AVX2 float dot_q5_1_avx2(const void* w, const void* act, int64_t n) {
    return legacy1_dot<true>(w, act, n);
}

QL_AVX2 float dot_q5_0_avx2(const void* w, const void* act, int64_t n) {
    const auto* x = static_cast<const block_q5_0*>(w);
    const auto* y = static_cast<const block_q8_0*>(act);
    __m256 acc = _mm256_setzero_ps();
    const __m256i high = _mm256_set1_epi8(static_cast<char>(0xF0));
    for (int64_t b = 0; b < n / QK8_0; ++b) {
        // value − 16: the nibble with 0xF0 set (as int8) where the fifth bit is clear.
        const __m256i qx = _mm256_or_si256(unpack_nibbles16(x[b].qs),
                                           _mm256_andnot_si256(bytes_from_bits(x[b].qh), high));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16(x[b].d) * fp16(y[b].d)),
                              _mm256_cvtepi32_ps(lanes_i8(qx, load32(y[b].qs))), acc);
    }
    return reduce(acc);
}

namespace {

QL_AVX2 inline float table4_scale(const block_iq4_nl& x) {
    return fp16(x.d);
}
inline float table4_scale(const block_mxfp4& x) {  // ggml's E8M0, halved: 2^(e−128)
    const uint32_t bits = x.e < 2 ? (0x00200000u << x.e) : static_cast<uint32_t>(x.e - 1) << 23;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

// IQ4_NL and MXFP4: codes through a 16-entry table, two blocks a step, one accumulator each.
template <typename Block>
QL_AVX2 inline float table4_dot(const void* w, const void* act, int64_t n, const int8_t* values) {
    const auto* x = static_cast<const Block*>(w);
    const auto* y = static_cast<const block_q8_0*>(act);
    const __m128i table128 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(values));
    const __m256i table = _mm256_set_m128i(table128, table128);
    const int64_t nb = n / 32;
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t b = 0;
    for (; b + 1 < nb; b += 2)
        for (int h = 0; h < 2; ++h) {
            const __m256i v = _mm256_shuffle_epi8(table, unpack_nibbles16(x[b + h].qs));
            acc[h] = _mm256_fmadd_ps(_mm256_set1_ps(fp16(y[b + h].d) * table4_scale(x[b + h])),
                                     _mm256_cvtepi32_ps(lanes_i8(v, load32(y[b + h].qs))), acc[h]);
        }
    float sumf = reduce(_mm256_add_ps(acc[0], acc[1]));
    for (; b < nb; ++b) {
        const __m256i v = _mm256_shuffle_epi8(table, unpack_nibbles16(x[b].qs));
        const __m256i l = lanes_i8(v, load32(y[b].qs));
        const __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(l), _mm256_extracti128_si256(l, 1));
        const __m128i s2 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
        const int sumi = _mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32(s2, 1)));
        const float d = fp16(y[b].d) * table4_scale(x[b]);
        sumf += d * static_cast<float>(sumi);
    }
    return sumf;
}

}  // namespace

QL_AVX2 float dot_iq4_nl_avx2(const void* w, const void* act, int64_t n) {
    return table4_dot<block_iq4_nl>(w, act, n, tables::kvalues_iq4nl);
}
QL_AVX2 float dot_mxfp4_avx2(const void* w, const void* act, int64_t n) {
    return table4_dot<block_mxfp4>(w, act, n, tables::kvalues_fp4);
}

// R activation rows (stride bytes apart) against one weight row: the weight is loaded once
// per block, each row keeps its own accumulator, so out[r] equals the single-row result.
template <int R>
QL_AVX2 inline void q8_0_rows(const void* w, const uint8_t* act, size_t stride, int64_t n,
                              float* out) {
    const auto* x = static_cast<const block_q8_0*>(w);
    __m256 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK8_0; ++b) {
        const float dx = fp16(x[b].d);
        const __m256i qx = load32(x[b].qs);
        for (int r = 0; r < R; ++r) {
            const auto* y = reinterpret_cast<const block_q8_0*>(act + r * stride) + b;
            const __m256 d = _mm256_set1_ps(dx * fp16(y->d));
            acc[r] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(lanes_i8(qx, load32(y->qs))), acc[r]);
        }
    }
    for (int r = 0; r < R; ++r) out[r] = reduce(acc[r]);
}

QL_AVX2_ROWS_ENTRY_POINTS(q8_0)

// The per-type kernels below follow ggml's AVX2 kernels one by one on purpose: each repeats
// the same preamble and accumulation so that it reads against its ggml original.
QL_AVX2 float dot_q2_K_avx2(const void* w, const void* act, int64_t n) {
    const auto* x = static_cast<const block_q2_K*>(w);
    const auto* y = static_cast<const block_q8_K*>(act);
    const __m256i three = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; ++b) {
        const float d = y[b].d * fp16(x[b].d);
        const float dmin = -y[b].d * fp16(x[b].dmin);
        const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[b].scales));
        const __m256i mins =
            _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(0xF)));
        const __m256i prod = _mm256_madd_epi16(mins, load32(y[b].bsums));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(prod), acc);
        __m256i sumi = _mm256_setzero_si256();
        for (int j = 0; j < 2; ++j) {
            const __m256i q2 = load32(x[b].qs + 32 * j);
            for (int s = 0; s < 4; ++s) {
                const __m256i q = _mm256_and_si256(_mm256_srli_epi16(q2, 2 * s), three);
                const __m256i p = _mm256_maddubs_epi16(q, load32(y[b].qs + 128 * j + 32 * s));
                const __m256i sc = chunk_scales(x[b].scales[8 * j + 2 * s] & 0xF,
                                                x[b].scales[8 * j + 2 * s + 1] & 0xF);
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, sc));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return reduce(acc);
}

QL_AVX2 float dot_q3_K_avx2(const void* w, const void* act, int64_t n) {
    const auto* x = static_cast<const block_q3_K*>(w);
    const auto* y = static_cast<const block_q8_K*>(act);
    const __m256i three = _mm256_set1_epi8(3), four = _mm256_set1_epi8(4);
    __m256 acc = _mm256_setzero_ps();
    int8_t scales[16];
    for (int64_t b = 0; b < n / QK_K; ++b) {
        const float d = y[b].d * fp16(x[b].d);
        q3k_scales(x[b].scales, scales);
        const __m256i hbits = load32(x[b].hmask);
        __m256i sumi = _mm256_setzero_si256();
        for (int j = 0; j < 2; ++j) {
            const __m256i q3 = load32(x[b].qs + 32 * j);
            for (int s = 0; s < 4; ++s) {
                const __m256i low = _mm256_and_si256(_mm256_srli_epi16(q3, 2 * s), three);
                const __m256i sub = _mm256_andnot_si256(bit_set_bytes(hbits, 4 * j + s), four);
                const __m256i a = load32(y[b].qs + 128 * j + 32 * s);
                const __m256i p =
                    _mm256_sub_epi16(_mm256_maddubs_epi16(low, a), _mm256_maddubs_epi16(sub, a));
                const __m256i sc = chunk_scales(scales[8 * j + 2 * s], scales[8 * j + 2 * s + 1]);
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, sc));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return reduce(acc);
}

namespace {

// Q4_K/Q5_K packed 6-bit scales and mins → 8 scales (bytes 0..7) and 8 mins (8..15).
inline void unpack_k4(const uint8_t* packed, uint8_t out[16]) {
    uint32_t u[3];
    std::memcpy(u, packed, 12);
    const uint32_t m6 = 0x3f3f3f3f, m4 = 0x0f0f0f0f, m2 = 0x03030303;
    const uint32_t w[4] = {u[0] & m6, (u[2] & m4) | (((u[0] >> 6) & m2) << 4), u[1] & m6,
                           ((u[2] >> 4) & m4) | (((u[1] >> 6) & m2) << 4)};
    std::memcpy(out, w, 16);
}

// The min term: four int32 lanes, lane m = mins[2m]·(bsums pair 2m) + mins[2m+1]·(pair 2m+1).
QL_AVX2 inline __m128i k4_min_lanes(const uint8_t sm[16], const int16_t* bsums) {
    const __m128i mins =
        _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sm + 8)));
    const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(bsums));
    const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(bsums + 8));
    return _mm_madd_epi16(mins, _mm_hadd_epi16(lo, hi));
}

}  // namespace

// The int16 scale of chunk c for madd, from 8 scale bytes broadcast to every 64-bit lane:
// pshufb takes byte c into each low byte and zero (index bit 7) into each high byte.
QL_AVX2 inline __m256i byte_scale_i16(__m256i scale_bytes, int c) {
    return _mm256_shuffle_epi8(scale_bytes, _mm256_set1_epi16(static_cast<int16_t>(0x8000 | c)));
}

// Q4_K's float part of block b, shared by the AVX2 and AVX-512 kernels: row r's min term
// (the 8 mins, bytes 8..15 of sc8, against the activation's bsums) and its int32 lane sums
// sumi[r], scaled, into its accumulators.
template <int R>
QL_AVX2 inline void q4_K_accumulate(const block_q4_K& xb, const block_q8_K* const* y, int64_t b,
                                    __m128i sc8, const __m256i* sumi, float (*acc)[8],
                                    float (*acc_m)[4]) {
    const float xd = fp16(xb.d), xmin = fp16(xb.dmin);
    const __m128i mins = _mm_cvtepu8_epi16(_mm_srli_si128(sc8, 8));
    for (int r = 0; r < R; ++r) {
        const block_q8_K& yb = y[r][b];
        const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(yb.bsums));
        const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(yb.bsums + 8));
        const __m128i prod = _mm_madd_epi16(mins, _mm_hadd_epi16(lo, hi));
        _mm_store_ps(acc_m[r], _mm_fmadd_ps(_mm_set1_ps(-yb.d * xmin), _mm_cvtepi32_ps(prod),
                                            _mm_load_ps(acc_m[r])));
        _mm256_store_ps(acc[r],
                        _mm256_fmadd_ps(_mm256_set1_ps(yb.d * xd), _mm256_cvtepi32_ps(sumi[r]),
                                        _mm256_load_ps(acc[r])));
    }
}
template <int R>
QL_AVX2 inline void q4_K_finish(float (*acc)[8], float (*acc_m)[4], float* out) {
    for (int r = 0; r < R; ++r) {
        const float* m = acc_m[r];
        out[r] = reduce(_mm256_load_ps(acc[r])) + ((m[0] + m[2]) + (m[1] + m[3]));
    }
}

// R activation rows against one Q4_K weight row. Per block the weight is unpacked once
// (nibbles, scales as pshufb selections) and met by every row; the per-row float
// accumulators live in memory (touched once a block) so the inner loop keeps its integer
// sums in registers.
template <int R>
QL_AVX2 inline void q4_K_rows(const void* w, const uint8_t* act, size_t stride, int64_t n,
                              float* out) {
    const auto* x = static_cast<const block_q4_K*>(w);
    const __m256i m4 = _mm256_set1_epi8(0xF);
    alignas(32) float acc[R][8] = {};
    alignas(16) float acc_m[R][4] = {};
    const block_q8_K* y[R];
    for (int r = 0; r < R; ++r) y[r] = reinterpret_cast<const block_q8_K*>(act + r * stride);
    uint8_t sm[16];
    for (int64_t b = 0; b < n / QK_K; ++b) {
        unpack_k4(x[b].scales, sm);
        __m128i sc8;
        std::memcpy(&sc8, sm, 16);
        const __m256i scale_bytes = _mm256_broadcastq_epi64(sc8);
        __m256i sumi[R];
        for (int r = 0; r < R; ++r) sumi[r] = _mm256_setzero_si256();
        for (int j = 0; j < 4; ++j) {  // 64-value groups: low nibbles, then high nibbles
            const __m256i q4 = load32(x[b].qs + 32 * j);
            const __m256i lo = _mm256_and_si256(q4, m4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
            const __m256i sc_lo = byte_scale_i16(scale_bytes, 2 * j);
            const __m256i sc_hi = byte_scale_i16(scale_bytes, 2 * j + 1);
            for (int r = 0; r < R; ++r) {
                const int8_t* q8 = y[r][b].qs + 64 * j;
                const __m256i p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, load32(q8)), sc_lo);
                const __m256i p_hi =
                    _mm256_madd_epi16(_mm256_maddubs_epi16(hi, load32(q8 + 32)), sc_hi);
                sumi[r] = _mm256_add_epi32(sumi[r], _mm256_add_epi32(p_lo, p_hi));
            }
        }
        q4_K_accumulate<R>(x[b], y, b, sc8, sumi, acc, acc_m);
    }
    q4_K_finish<R>(acc, acc_m, out);
}

QL_AVX2_ROWS_ENTRY_POINTS(q4_K)

QL_AVX2 float dot_q5_K_avx2(const void* w, const void* act, int64_t n) {
    const auto* x = static_cast<const block_q5_K*>(w);
    const auto* y = static_cast<const block_q8_K*>(act);
    const __m256i m4 = _mm256_set1_epi8(0xF), bit4 = _mm256_set1_epi8(0x10);
    __m256 acc = _mm256_setzero_ps();
    float summs = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
        const float d = y[b].d * fp16(x[b].d);
        const float dmin = -y[b].d * fp16(x[b].dmin);
        uint8_t sm[16];
        unpack_k4(x[b].scales, sm);
        int32_t prod[4];
        _mm_storeu_si128(reinterpret_cast<__m128i*>(prod), k4_min_lanes(sm, y[b].bsums));
        // fused, as GCC contracts ggml's "summs += dmin * sum" (checked against ggml-cpu)
        summs = std::fma(dmin, static_cast<float>(prod[0] + prod[1] + prod[2] + prod[3]), summs);
        const __m256i hbits = load32(x[b].qh);
        __m256i sumi = _mm256_setzero_si256();
        for (int j = 0; j < 4; ++j) {
            const int sc_lo = sm[2 * j], sc_hi = sm[2 * j + 1];
            const __m256i q5 = load32(x[b].qs + 32 * j);
            const __m256i lo = _mm256_or_si256(_mm256_and_si256(q5, m4),
                                               _mm256_and_si256(bit_set_bytes(hbits, 2 * j), bit4));
            const __m256i hi =
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q5, 4), m4),
                                _mm256_and_si256(bit_set_bytes(hbits, 2 * j + 1), bit4));
            const __m256i p_lo = _mm256_madd_epi16(
                _mm256_maddubs_epi16(lo, load32(y[b].qs + 64 * j)), _mm256_set1_epi16(sc_lo));
            const __m256i p_hi = _mm256_madd_epi16(
                _mm256_maddubs_epi16(hi, load32(y[b].qs + 64 * j + 32)), _mm256_set1_epi16(sc_hi));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p_lo, p_hi));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return reduce(acc) + summs;
}

// Chunk c (32 values) of a Q6_K block as unsigned 6-bit levels.
QL_AVX2 inline __m256i q6_K_chunk(const block_q6_K& x, int c, __m256i m4, __m256i m3) {
    const int j = c / 4, k = c % 4;
    const __m256i ql = load32(x.ql + 64 * j + 32 * (k % 2));
    const __m256i low = _mm256_and_si256(k < 2 ? ql : _mm256_srli_epi16(ql, 4), m4);
    const __m256i high =
        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(load32(x.qh + 32 * j), 2 * k), m3), 4);
    return _mm256_or_si256(low, high);
}

template <int R>
QL_AVX2 inline void q6_K_rows(const void* w, const uint8_t* act, size_t stride, int64_t n,
                              float* out) {
    const auto* x = static_cast<const block_q6_K*>(w);
    const __m256i m4 = _mm256_set1_epi8(0xF), m3 = _mm256_set1_epi8(3);
    const __m256i offset = _mm256_set1_epi8(32);
    __m256 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; ++b) {
        const float xd = fp16(x[b].d);
        const block_q8_K* y[R];
        __m256i sumi[R];
        for (int r = 0; r < R; ++r) {
            y[r] = reinterpret_cast<const block_q8_K*>(act + r * stride) + b;
            sumi[r] = _mm256_setzero_si256();
        }
        for (int c = 0; c < 8; ++c) {  // 32-value chunks, unpacked once, met by every row
            const __m256i q = q6_K_chunk(x[b], c, m4, m3);
            const int8_t* s = x[b].scales + 2 * c;
            const __m256i sc = chunk_scales(s[0], s[1]);
            for (int r = 0; r < R; ++r) {
                const __m256i a = load32(y[r]->qs + 32 * c);
                const __m256i p =
                    _mm256_sub_epi16(_mm256_maddubs_epi16(q, a), _mm256_maddubs_epi16(offset, a));
                sumi[r] = _mm256_add_epi32(sumi[r], _mm256_madd_epi16(p, sc));
            }
        }
        for (int r = 0; r < R; ++r)
            acc[r] =
                _mm256_fmadd_ps(_mm256_set1_ps(y[r]->d * xd), _mm256_cvtepi32_ps(sumi[r]), acc[r]);
    }
    for (int r = 0; r < R; ++r) out[r] = reduce(acc[r]);
}

QL_AVX2_ROWS_ENTRY_POINTS(q6_K)

QL_AVX2 float dot_iq4_xs_avx2(const void* w, const void* act, int64_t n) {
    const auto* x = static_cast<const block_iq4_xs*>(w);
    const auto* y = static_cast<const block_q8_K*>(act);
    const __m128i table128 =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(tables::kvalues_iq4nl));
    const __m256i table = _mm256_set_m128i(table128, table128);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; ++b) {
        __m256i sumi = _mm256_setzero_si256();
        for (int ib = 0; ib < 8; ++ib) {
            const int ls = ((x[b].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) |
                           (((x[b].scales_h >> (2 * ib)) & 3) << 4);
            const __m256i v = _mm256_shuffle_epi8(table, unpack_nibbles16(x[b].qs + 16 * ib));
            const __m256i p = pairs_i8(v, load32(y[b].qs + 32 * ib));
            sumi = _mm256_add_epi32(
                sumi, _mm256_madd_epi16(p, _mm256_set1_epi16(static_cast<int16_t>(ls - 32))));
        }
        const float d = fp16(x[b].d) * y[b].d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return reduce(acc);
}

// Each block decoded to its integers (detail::IqBlock), then met in 32-value chunks as
// maddubs(|w|, sign(q8, w)) × the chunk's two 16-value scales: the twin's lanes exactly
// (activations lie in [−127, 127], so negating one never overflows).
QL_AVX2 float dot_iq_avx2(IqDecodeFn decode, size_t block_bytes, float factor, bool delta,
                          const void* w, const void* act, int64_t n) {
    const auto* x = static_cast<const uint8_t*>(w);
    const auto* y = static_cast<const block_q8_K*>(act);
    __m256 acc = _mm256_setzero_ps();
    float delta_acc = 0.0f;
    alignas(32) IqBlock q;
    for (int64_t b = 0; b < n / QK_K; ++b) {
        const uint8_t* block = x + b * block_bytes;
        decode(block, q);
        __m256i sumi = _mm256_setzero_si256();
        for (int c = 0; c < 8; ++c) {
            const __m256i wq = load32(q.w + 32 * c);
            const __m256i p = pairs_i8(wq, load32(y[b].qs + 32 * c));
            sumi = _mm256_add_epi32(
                sumi, _mm256_madd_epi16(p, chunk_scales(q.sc[2 * c], q.sc[2 * c + 1])));
        }
        int delta_sum = 0;
        for (int ib = 0; ib < 8; ++ib)
            delta_sum += q.delta[ib] * q.sc[2 * ib] * (y[b].bsums[2 * ib] + y[b].bsums[2 * ib + 1]);
        uint16_t h;
        std::memcpy(&h, block, 2);
        const float d = fp16(h) * y[b].d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        delta_acc = std::fma(d, static_cast<float>(delta_sum), delta_acc);
    }
    const float sum = factor * reduce(acc);
    return delta ? sum + 0.125f * delta_acc : sum;
}

QL_AVX2 float dot_iq1_m_avx2(const void* w, const void* act, int64_t n) {
    const auto* x = static_cast<const block_iq1_m*>(w);
    const auto* y = static_cast<const block_q8_K*>(act);
    __m256 acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps();
    alignas(32) IqBlock q;
    alignas(32) int8_t delta8[32];
    for (int64_t b = 0; b < n / QK_K; ++b) {
        uint16_t h;
        decode_iq1_m(x + b, q, delta8, &h);
        __m256i sumi1 = _mm256_setzero_si256(), sumi2 = _mm256_setzero_si256();
        for (int c = 0; c < 8; ++c) {
            const __m256i a = load32(y[b].qs + 32 * c);
            const __m256i sc = chunk_scales(q.sc[2 * c], q.sc[2 * c + 1]);
            int64_t dl;  // the four 8-value delta signs of this chunk, spread to 32 bytes
            std::memcpy(&dl, delta8 + 4 * c, 4);
            const __m256i delta = _mm256_shuffle_epi8(
                _mm256_set1_epi64x(dl),
                _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2,
                                 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
            sumi1 =
                _mm256_add_epi32(sumi1, _mm256_madd_epi16(pairs_i8(load32(q.w + 32 * c), a), sc));
            sumi2 = _mm256_add_epi32(sumi2, _mm256_madd_epi16(pairs_i8(delta, a), sc));
        }
        const __m256 d = _mm256_set1_ps(y[b].d * fp16(h));
        acc1 = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi1), acc1);
        acc2 = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi2), acc2);
    }
    return reduce(acc1) + 0.125f * reduce(acc2);
}

// TQ2_0: int16 pair sums of every 32-value chunk (weights 0..2 · q8 fit easily), less the
// bsums, widened to the twin's eight lanes.
QL_AVX2 float dot_tq2_0_avx2(const void* w, const void* act, int64_t n) {
    const auto* x = static_cast<const block_tq2_0*>(w);
    const auto* y = static_cast<const block_q8_K*>(act);
    const __m256i three = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; ++b) {
        __m256i sum16 = _mm256_setzero_si256();
        for (int h = 0; h < 2; ++h) {
            const __m256i bits = load32(x[b].qs + 32 * h);
            for (int g = 0; g < 4; ++g) {
                const __m256i q = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * g), three);
                sum16 = _mm256_add_epi16(
                    sum16, _mm256_maddubs_epi16(q, load32(y[b].qs + 128 * h + 32 * g)));
            }
        }
        sum16 = _mm256_sub_epi16(sum16, load32(y[b].bsums));
        const __m256i lanes = _mm256_madd_epi16(sum16, _mm256_set1_epi16(1));
        acc =
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes), _mm256_set1_ps(y[b].d * fp16(x[b].d)), acc);
    }
    return reduce(acc);
}

// TQ1_0: trits decoded per block (scalar), then TQ2_0's int16 lanes less the bsums.
QL_AVX2 float dot_tq1_0_avx2(const void* w, const void* act, int64_t n) {
    const auto* x = static_cast<const block_tq1_0*>(w);
    const auto* y = static_cast<const block_q8_K*>(act);
    __m256 acc = _mm256_setzero_ps();
    alignas(32) uint8_t trits[QK_K];
    for (int64_t b = 0; b < n / QK_K; ++b) {
        decode_tq1_0(x + b, trits);
        __m256i sum16 = _mm256_setzero_si256();
        for (int c = 0; c < 8; ++c)
            sum16 = _mm256_add_epi16(
                sum16, _mm256_maddubs_epi16(load32(trits + 32 * c), load32(y[b].qs + 32 * c)));
        sum16 = _mm256_sub_epi16(sum16, load32(y[b].bsums));
        const __m256i lanes = _mm256_madd_epi16(sum16, _mm256_set1_epi16(1));
        acc =
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes), _mm256_set1_ps(y[b].d * fp16(x[b].d)), acc);
    }
    return reduce(acc);
}

// ---- AVX-512 (AVX512F + AVX512BW): the Q4_K_M workhorses ----------------------------------
// The same kernels with each pair of 32-value chunks in one 512-bit register: its halves hold
// exactly the int32 lanes the AVX2 kernel sums per chunk, added together before the float
// part, which is the AVX2 kernel's unchanged (integer sums are exact in any order), so the
// results equal the scalar twins bit for bit.
#define QL_AVX512 __attribute__((target("avx512f,avx512bw,avx2,fma,f16c")))
// GCC 12's insert/extract intrinsics pass an undefined vector as the unused masked source,
// which -Wmaybe-uninitialized reports once inlined here; every lane read is defined.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

QL_AVX512 inline __m512i join(__m256i lo, __m256i hi) {
    return _mm512_inserti64x4(_mm512_zextsi256_si512(lo), hi, 1);
}
QL_AVX512 inline __m256i fold(__m512i v) {
    return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
}

template <int R>
QL_AVX512 inline void q4_K_rows_512(const void* w, const uint8_t* act, size_t stride, int64_t n,
                                    float* out) {
    const auto* x = static_cast<const block_q4_K*>(w);
    const __m256i m4 = _mm256_set1_epi8(0xF);
    alignas(32) float acc[R][8] = {};
    alignas(16) float acc_m[R][4] = {};
    const block_q8_K* y[R];
    for (int r = 0; r < R; ++r) y[r] = reinterpret_cast<const block_q8_K*>(act + r * stride);
    uint8_t sm[16];
    for (int64_t b = 0; b < n / QK_K; ++b) {
        unpack_k4(x[b].scales, sm);
        __m128i sc8;
        std::memcpy(&sc8, sm, 16);
        const __m256i scale_bytes = _mm256_broadcastq_epi64(sc8);
        __m512i sumi[R];
        for (int r = 0; r < R; ++r) sumi[r] = _mm512_setzero_si512();
        for (int j = 0; j < 4; ++j) {  // low nibbles | high nibbles of a 64-value group
            const __m256i q4 = load32(x[b].qs + 32 * j);
            const __m512i q =
                join(_mm256_and_si256(q4, m4), _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4));
            const __m512i sc =
                join(byte_scale_i16(scale_bytes, 2 * j), byte_scale_i16(scale_bytes, 2 * j + 1));
            for (int r = 0; r < R; ++r) {
                const __m512i a = _mm512_loadu_si512(y[r][b].qs + 64 * j);
                sumi[r] =
                    _mm512_add_epi32(sumi[r], _mm512_madd_epi16(_mm512_maddubs_epi16(q, a), sc));
            }
        }
        __m256i lanes[R];
        for (int r = 0; r < R; ++r) lanes[r] = fold(sumi[r]);
        q4_K_accumulate<R>(x[b], y, b, sc8, lanes, acc, acc_m);
    }
    q4_K_finish<R>(acc, acc_m, out);
}

template <int R>
QL_AVX512 inline void q6_K_rows_512(const void* w, const uint8_t* act, size_t stride, int64_t n,
                                    float* out) {
    const auto* x = static_cast<const block_q6_K*>(w);
    const __m256i m4 = _mm256_set1_epi8(0xF), m3 = _mm256_set1_epi8(3);
    const __m512i offset = _mm512_set1_epi8(32);
    __m256 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; ++b) {
        const float xd = fp16(x[b].d);
        const block_q8_K* y[R];
        __m512i sumi[R];
        for (int r = 0; r < R; ++r) {
            y[r] = reinterpret_cast<const block_q8_K*>(act + r * stride) + b;
            sumi[r] = _mm512_setzero_si512();
        }
        for (int c = 0; c < 8; c += 2) {  // chunks c and c + 1
            const __m512i q = join(q6_K_chunk(x[b], c, m4, m3), q6_K_chunk(x[b], c + 1, m4, m3));
            const int8_t* s = x[b].scales + 2 * c;
            const __m512i sc = join(chunk_scales(s[0], s[1]), chunk_scales(s[2], s[3]));
            for (int r = 0; r < R; ++r) {
                const __m512i a = _mm512_loadu_si512(y[r]->qs + 32 * c);
                const __m512i p =
                    _mm512_sub_epi16(_mm512_maddubs_epi16(q, a), _mm512_maddubs_epi16(offset, a));
                sumi[r] = _mm512_add_epi32(sumi[r], _mm512_madd_epi16(p, sc));
            }
        }
        for (int r = 0; r < R; ++r)
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(y[r]->d * xd),
                                     _mm256_cvtepi32_ps(fold(sumi[r])), acc[r]);
    }
    for (int r = 0; r < R; ++r) out[r] = reduce(acc[r]);
}

#define QL_AVX512_ROWS_ENTRY_POINTS(T)                                                         \
    QL_AVX512 float dot_##T##_avx512(const void* w, const void* act, int64_t n) {              \
        float out;                                                                             \
        T##_rows_512<1>(w, static_cast<const uint8_t*>(act), 0, n, &out);                      \
        return out;                                                                            \
    }                                                                                          \
    QL_AVX512 void dot4_##T##_avx512(const void* w, const void* act, size_t stride, int64_t n, \
                                     float* out) {                                             \
        T##_rows_512<4>(w, static_cast<const uint8_t*>(act), stride, n, out);                  \
    }
QL_AVX512_ROWS_ENTRY_POINTS(q4_K)
QL_AVX512_ROWS_ENTRY_POINTS(q6_K)
#undef QL_AVX512_ROWS_ENTRY_POINTS
#pragma GCC diagnostic pop

}  // namespace quantlens::vec_dot::detail

#else  // not x86: never called (vec_dot.cpp checks the CPU), defined so the table links

namespace quantlens::vec_dot::detail {
#define QL_UNREACHABLE_DOT(name)                    \
    float name(const void*, const void*, int64_t) { \
        return 0;                                   \
    }
QL_UNREACHABLE_DOT(dot_q4_0_avx2)
QL_UNREACHABLE_DOT(dot_q8_0_avx2)
QL_UNREACHABLE_DOT(dot_q2_K_avx2)
QL_UNREACHABLE_DOT(dot_q3_K_avx2)
QL_UNREACHABLE_DOT(dot_q4_K_avx2)
QL_UNREACHABLE_DOT(dot_q5_K_avx2)
QL_UNREACHABLE_DOT(dot_q6_K_avx2)
QL_UNREACHABLE_DOT(dot_iq4_xs_avx2)
QL_UNREACHABLE_DOT(dot_q4_K_avx512)
QL_UNREACHABLE_DOT(dot_q6_K_avx512)
#undef QL_UNREACHABLE_DOT
}  // namespace quantlens::vec_dot::detail

#endif
