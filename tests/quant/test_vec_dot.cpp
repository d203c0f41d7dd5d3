// Quantized dot products (quant/vec_dot.h): the AVX2 kernels equal their scalar twins bit for
// bit on random blocks of every covered type; the twins compute Σ w·x of the dequantized
// operands; activation rows are quantized as ggml's AVX2 build does (round half to even);
// the threaded matrix product is one dot per output whatever the thread count.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/half.h"
#include "core/parallel.h"
#include "quant/blocks.h"
#include "quant/quant.h"
#include "quant/vec_dot.h"
#include "quant/vec_dot_impl.h"

namespace quantlens {
namespace {

const GgmlType kCovered[] = {
    GgmlType::F16,   GgmlType::Q4_0,    GgmlType::Q4_1,   GgmlType::Q5_0,    GgmlType::Q5_1,
    GgmlType::Q8_0,  GgmlType::Q2_K,    GgmlType::Q3_K,   GgmlType::Q4_K,    GgmlType::Q5_K,
    GgmlType::Q6_K,  GgmlType::IQ4_NL,  GgmlType::IQ4_XS, GgmlType::IQ2_XXS, GgmlType::IQ2_XS,
    GgmlType::IQ2_S, GgmlType::IQ3_XXS, GgmlType::IQ3_S,  GgmlType::IQ1_S,   GgmlType::IQ1_M,
    GgmlType::TQ2_0, GgmlType::TQ1_0,   GgmlType::MXFP4};
// Every covered type has an AVX2 kernel (checked when the CPU has AVX2, FMA and F16C).
const auto& kAvx2 = kCovered;

std::vector<float> random_row(std::mt19937& rng, int64_t n, float scale) {
    std::normal_distribution<float> normal(0.0f, scale);
    std::vector<float> x(static_cast<size_t>(n));
    for (float& v : x) v = normal(rng);
    if (n > 3) x[3] = 9 * scale;  // an outlier, as real activations have
    return x;
}

// A weight row of random bytes with finite random F16 scales: every bit pattern of quants,
// sub-block scales and high bits occurs.
std::vector<uint8_t> random_blocks(std::mt19937& rng, GgmlType type, int64_t n) {
    std::vector<uint8_t> w(ggml_row_size(type, n));
    if (type == GgmlType::F16 || type == GgmlType::BF16) {  // finite, magnitudes spread
        std::normal_distribution<float> normal(0.0f, 1.0f);
        for (int64_t i = 0; i < n; ++i) {
            const float v = normal(rng) * std::ldexp(1.0f, static_cast<int>(rng() % 12) - 8);
            const uint16_t h = type == GgmlType::F16 ? f32_to_f16(v) : f32_to_bf16(v);
            std::memcpy(w.data() + 2 * i, &h, 2);
        }
        return w;
    }
    for (uint8_t& b : w) b = static_cast<uint8_t>(rng());
    const GgmlTypeInfo& info = ggml_type_info(type);
    std::uniform_real_distribution<float> scale(-0.02f, 0.02f);
    if (type == GgmlType::MXFP4) {  // an E8M0 exponent byte, kept near 2^0
        for (size_t block = 0; block < w.size() / info.bytes_per_block; ++block)
            w[block * info.bytes_per_block] = static_cast<uint8_t>(110 + rng() % 24);
        return w;
    }
    if (type == GgmlType::IQ1_M) {  // the F16 scale is the top nibbles of four scale words
        for (size_t block = 0; block < w.size() / info.bytes_per_block; ++block) {
            const uint16_t h = f32_to_f16(scale(rng));
            uint8_t* words =
                w.data() + block * info.bytes_per_block + offsetof(blocks::block_iq1_m, scales);
            for (int k = 0; k < 4; ++k)
                words[2 * k + 1] =
                    static_cast<uint8_t>((words[2 * k + 1] & 0x0F) | (((h >> (4 * k)) & 0xF) << 4));
        }
        return w;
    }
    for (size_t block = 0; block < w.size() / info.bytes_per_block; ++block)
        for (size_t off : vec_dot::half_scale_offsets(type)) {
            const uint16_t h = f32_to_f16(scale(rng));
            std::memcpy(w.data() + block * info.bytes_per_block + off, &h, 2);
        }
    return w;
}

TEST(VecDot, FastPathsMatchScalarTwinsBitForBit) {
    std::mt19937 rng(28);
    for (GgmlType type : kAvx2) {
        SCOPED_TRACE(ggml_type_display_name(type));
        if (!vec_dot::has_fast_path(type)) GTEST_SKIP() << "this CPU has no AVX2/FMA";
        // 32·11: an odd number of 32-blocks; 256·5 for the super-block types; F16 with a
        // tail past the last 32-value step.
        const int64_t block = ggml_type_info(type).block_size;
        const int64_t n = block == 1 ? 32 * 7 + 13 : block == 32 ? 32 * 11 : 256 * 5;
        std::vector<uint8_t> act(vec_dot::act_row_size(type, n));
        for (int trial = 0; trial < 100; ++trial) {
            // i-quant grids: random blocks only (IQ2_XXS/IQ2_XS/IQ1_S quantize only with an
            // imatrix, the others slowly; random indices reach every grid entry anyway)
            const bool random_only = type == GgmlType::IQ2_XXS || type == GgmlType::IQ2_XS ||
                                     type == GgmlType::IQ2_S || type == GgmlType::IQ3_XXS ||
                                     type == GgmlType::IQ3_S || type == GgmlType::IQ1_S ||
                                     type == GgmlType::IQ1_M;
            const std::vector<uint8_t> w =
                trial % 2 || random_only ? random_blocks(rng, type, n) : [&] {
                    const std::vector<float> v = random_row(rng, n, 0.05f);
                    std::vector<uint8_t> q(ggml_row_size(type, n));
                    quantize(type, v.data(), q.data(), 1, n);
                    return q;
                }();
            const std::vector<float> x = random_row(rng, n, trial % 3 ? 1.0f : 300.0f);
            vec_dot::quantize_act_row(type, x.data(), act.data(), n);
            const float fast = vec_dot::dot(type, w.data(), act.data(), n);
            const float ref = vec_dot::dot_ref(type, w.data(), act.data(), n);
            uint32_t a, b;
            std::memcpy(&a, &fast, 4);
            std::memcpy(&b, &ref, 4);
            ASSERT_EQ(a, b) << "trial " << trial << ": " << fast << " vs " << ref;
        }
    }
}

// The twins against double-precision Σ dequant(w)·dequant(x): the integer part is exact and
// the float schedule rounds a few times per block, so 1e-5 of Σ|w·x| bounds the difference.
constexpr double kDotRelTol = 1e-5;

std::vector<float> dequantized_activations(GgmlType type, const std::vector<uint8_t>& act,
                                           int64_t n) {
    using namespace blocks;
    std::vector<float> x(static_cast<size_t>(n));
    const GgmlType a = vec_dot::act_type(type);
    for (int64_t i = 0; i < n; ++i) {
        if (a == GgmlType::F16 || a == GgmlType::BF16) {  // held as floats of those values
            std::memcpy(&x[i], act.data() + 4 * i, 4);
        } else if (a == GgmlType::Q8_K) {
            const auto* y = reinterpret_cast<const block_q8_K*>(act.data()) + i / 256;
            x[i] = y->d * y->qs[i % 256];
        } else if (a == GgmlType::Q8_1) {
            const auto* y = reinterpret_cast<const block_q8_1*>(act.data()) + i / 32;
            x[i] = f16_to_f32(y->d) * y->qs[i % 32];
        } else {
            const auto* y = reinterpret_cast<const block_q8_0*>(act.data()) + i / 32;
            x[i] = f16_to_f32(y->d) * y->qs[i % 32];
        }
    }
    return x;
}

// The AVX-512 kernels (chosen at run time where the CPU has AVX512F/BW) and the AVX2 ones they
// replace there, each against the scalar twin, one row and four.
TEST(VecDot, Avx512KernelsMatchScalarTwinsBitForBit) {
    if (!vec_dot::has_fast_path(GgmlType::Q4_K) || !vec_dot::detail::cpu_has_avx512bw())
        GTEST_SKIP() << "this CPU has no AVX-512 (F, BW)";
    struct Paths {
        GgmlType type;
        vec_dot::detail::DotFn one512, one256;
        vec_dot::detail::Dot4Fn four512, four256;
    };
    using namespace vec_dot::detail;
    const Paths paths[] = {
        {GgmlType::Q4_K, dot_q4_K_avx512, dot_q4_K_avx2, dot4_q4_K_avx512, dot4_q4_K_avx2},
        {GgmlType::Q6_K, dot_q6_K_avx512, dot_q6_K_avx2, dot4_q6_K_avx512, dot4_q6_K_avx2},
    };
    std::mt19937 rng(512);
    auto bits = [](float f) {
        uint32_t u;
        std::memcpy(&u, &f, 4);
        return u;
    };
    for (const Paths& p : paths) {
        SCOPED_TRACE(ggml_type_display_name(p.type));
        const int64_t n = 256 * 5;
        const size_t stride = vec_dot::act_row_size(p.type, n);
        std::vector<uint8_t> act(4 * stride);
        for (int trial = 0; trial < 50; ++trial) {
            for (int r = 0; r < 4; ++r) {
                const std::vector<float> x = random_row(rng, n, (trial + r) % 3 ? 1.0f : 300.0f);
                vec_dot::quantize_act_row(p.type, x.data(), act.data() + r * stride, n);
            }
            const std::vector<uint8_t> w = random_blocks(rng, p.type, n);
            float four512[4], four256[4];
            p.four512(w.data(), act.data(), stride, n, four512);
            p.four256(w.data(), act.data(), stride, n, four256);
            for (int r = 0; r < 4; ++r) {
                const uint8_t* a = act.data() + r * stride;
                const uint32_t ref = bits(vec_dot::dot_ref(p.type, w.data(), a, n));
                ASSERT_EQ(bits(p.one512(w.data(), a, n)), ref) << "trial " << trial;
                ASSERT_EQ(bits(p.one256(w.data(), a, n)), ref) << "trial " << trial;
                ASSERT_EQ(bits(four512[r]), ref) << "trial " << trial << " row " << r;
                ASSERT_EQ(bits(four256[r]), ref) << "trial " << trial << " row " << r;
            }
        }
    }
}

TEST(VecDot, FourRowKernelsEqualTheSingleRowTwin) {
    std::mt19937 rng(41);
    for (GgmlType type : kCovered) {
        SCOPED_TRACE(ggml_type_display_name(type));
        const int64_t n = 256 * 3;
        const size_t stride = vec_dot::act_row_size(type, n);
        std::vector<uint8_t> act(4 * stride);
        for (int r = 0; r < 4; ++r) {
            const std::vector<float> x = random_row(rng, n, r == 2 ? 300.0f : 1.0f);
            vec_dot::quantize_act_row(type, x.data(), act.data() + r * stride, n);
        }
        for (int trial = 0; trial < 10; ++trial) {
            const std::vector<uint8_t> w = random_blocks(rng, type, n);
            float four[4];
            vec_dot::dot4(type, w.data(), act.data(), stride, n, four);
            for (int r = 0; r < 4; ++r) {
                const float ref = vec_dot::dot_ref(type, w.data(), act.data() + r * stride, n);
                uint32_t a, b;
                std::memcpy(&a, &four[r], 4);
                std::memcpy(&b, &ref, 4);
                ASSERT_EQ(a, b) << "row " << r << ": " << four[r] << " vs " << ref;
            }
        }
    }
}

TEST(VecDot, ScalarTwinsComputeTheDotProductOfTheDequantizedRows) {
    std::mt19937 rng(7);
    for (GgmlType type : kCovered) {
        SCOPED_TRACE(ggml_type_display_name(type));
        ASSERT_TRUE(vec_dot::supported(type));
        const int64_t n = 256 * 3;
        for (int trial = 0; trial < 20; ++trial) {
            const std::vector<uint8_t> w = random_blocks(rng, type, n);
            std::vector<float> wf(static_cast<size_t>(n));
            dequantize(type, w.data(), wf.data(), 1, n);
            const std::vector<float> x = random_row(rng, n, 1.0f);
            std::vector<uint8_t> act(vec_dot::act_row_size(type, n));
            vec_dot::quantize_act_row(type, x.data(), act.data(), n);
            const std::vector<float> xf = dequantized_activations(type, act, n);
            double exact = 0, magnitude = 0;
            for (int64_t i = 0; i < n; ++i) {
                exact += static_cast<double>(wf[i]) * xf[i];
                magnitude += std::fabs(static_cast<double>(wf[i]) * xf[i]);
            }
            // Q4_1/Q5_1 carry the min term through y.s = F16(d·Σq), a rounded sum.
            const bool rounded_sum = vec_dot::act_type(type) == GgmlType::Q8_1;
            const double tol = rounded_sum ? 2e-3 : kDotRelTol;
            EXPECT_NEAR(vec_dot::dot_ref(type, w.data(), act.data(), n), exact,
                        tol * magnitude + 1e-30)
                << "trial " << trial;
        }
    }
}

TEST(VecDot, UnsupportedTypesAreReportedAsSuch) {
    EXPECT_FALSE(vec_dot::supported(GgmlType::NVFP4));
    EXPECT_EQ(vec_dot::act_type(GgmlType::Q4_K), GgmlType::Q8_K);
    EXPECT_EQ(vec_dot::act_type(GgmlType::IQ4_NL), GgmlType::Q8_0);
    EXPECT_EQ(vec_dot::act_type(GgmlType::Q5_1), GgmlType::Q8_1);
}

TEST(VecDot, Q8_0ActivationsRoundHalfToEvenLikeGgmlAvx2) {
    // amax 127 → d = 1, id = 1: q = x rounded half to even (ggml's scalar reference would
    // round 2.5 to 3; its AVX2 build, which llama.cpp runs on x86, gives 2).
    std::vector<float> x(32, 0.0f);
    x[0] = 127.0f, x[1] = 2.5f, x[2] = 3.5f, x[3] = -2.5f, x[4] = 0.49f;
    blocks::block_q8_0 q;
    vec_dot::quantize_act_row(GgmlType::Q8_0, x.data(), &q, 32);
    EXPECT_EQ(f16_to_f32(q.d), 1.0f);
    EXPECT_EQ(q.qs[0], 127);
    EXPECT_EQ(q.qs[1], 2);
    EXPECT_EQ(q.qs[2], 4);
    EXPECT_EQ(q.qs[3], -2);
    EXPECT_EQ(q.qs[4], 0);
}

TEST(VecDot, Q8_KActivationsMapTheLargestMagnitudeToMinus127) {
    std::vector<float> x(256, 0.0f);
    x[10] = -2.0f, x[11] = 1.0f, x[20] = 0.5f;
    blocks::block_q8_K q;
    vec_dot::quantize_act_row(GgmlType::Q4_K, x.data(), &q, 256);
    EXPECT_FLOAT_EQ(q.d, 1.0f / (127.0f / 2.0f));  // iscale = −127/max, d = 1/iscale
    EXPECT_EQ(q.qs[10], -127);
    EXPECT_EQ(q.qs[11], 64);  // 63.5 → 64 (half to even)
    EXPECT_EQ(q.qs[20], 32);  // 31.75 → 32
    EXPECT_EQ(q.bsums[0], -127 + 64);
    EXPECT_EQ(q.bsums[1], 32);
}

TEST(VecDot, MatmulIsOneDotPerOutputWhateverTheThreads) {
    std::mt19937 rng(3);
    const int64_t N = 5, IN = 512, OUT = 37;
    for (GgmlType type : {GgmlType::Q4_K, GgmlType::Q8_0, GgmlType::Q5_1, GgmlType::F16}) {
        SCOPED_TRACE(ggml_type_display_name(type));
        std::vector<uint8_t> w;
        for (int64_t o = 0; o < OUT; ++o) {
            const std::vector<uint8_t> row = random_blocks(rng, type, IN);
            w.insert(w.end(), row.begin(), row.end());
        }
        const std::vector<float> in = random_row(rng, N * IN, 1.0f);
        std::vector<float> bias(OUT);
        for (int64_t o = 0; o < OUT; ++o) bias[o] = 0.25f * static_cast<float>(o);
        std::vector<float> out1(N * OUT), out2(N * OUT);
        const int saved = num_threads();
        set_num_threads(1);
        vec_dot::matmul(out1.data(), in.data(), type, w.data(), bias.data(), N, IN, OUT);
        set_num_threads(2);
        vec_dot::matmul(out2.data(), in.data(), type, w.data(), bias.data(), N, IN, OUT);
        set_num_threads(saved);
        EXPECT_EQ(std::memcmp(out1.data(), out2.data(), out1.size() * 4), 0);
        std::vector<uint8_t> act(vec_dot::act_row_size(type, IN));
        const size_t row = ggml_row_size(type, IN);
        for (int64_t r = 0; r < N; ++r) {
            vec_dot::quantize_act_row(type, in.data() + r * IN, act.data(), IN);
            for (int64_t o = 0; o < OUT; ++o)
                ASSERT_EQ(out1[r * OUT + o],
                          vec_dot::dot_ref(type, w.data() + o * row, act.data(), IN) + bias[o]);
        }
    }
}

// A prompt (≥ 2 activation rows) goes to llamafile's tinyBLAS in ggml-cpu for F16/BF16 (whole
// tiles) and IQ4_NL: matmul then follows gemm_dot's order, whose AVX2 kernels equal their
// scalar twins; a single row keeps ggml's dot product.
TEST(VecDot, PromptProductsFollowLlamafileOrder) {
    std::mt19937 rng(11);
    const int64_t IN = 96 * 8, OUT = 8;  // 24 IQ4_NL blocks; 96 32-value F16 steps
    for (GgmlType type : {GgmlType::F16, GgmlType::BF16, GgmlType::IQ4_NL}) {
        SCOPED_TRACE(ggml_type_display_name(type));
        ASSERT_TRUE(vec_dot::gemm_order(type, IN, OUT));
        std::vector<uint8_t> w;
        for (int64_t o = 0; o < OUT; ++o) {
            const std::vector<uint8_t> row = random_blocks(rng, type, IN);
            w.insert(w.end(), row.begin(), row.end());
        }
        const int64_t N = 5;
        const std::vector<float> in = random_row(rng, N * IN, 1.0f);
        std::vector<float> out(N * OUT), one(OUT);
        vec_dot::matmul(out.data(), in.data(), type, w.data(), nullptr, N, IN, OUT);
        vec_dot::matmul(one.data(), in.data(), type, w.data(), nullptr, 1, IN, OUT);
        std::vector<uint8_t> act(vec_dot::act_row_size(type, IN));
        const size_t row = ggml_row_size(type, IN);
        int orders_differ = 0;
        for (int64_t r = 0; r < N; ++r) {
            vec_dot::quantize_act_row(type, in.data() + r * IN, act.data(), IN);
            for (int64_t o = 0; o < OUT; ++o) {
                const uint8_t* wr = w.data() + o * row;
                const float gemm = vec_dot::gemm_dot_ref(type, wr, act.data(), IN);
                const float dot = vec_dot::dot_ref(type, wr, act.data(), IN);
                ASSERT_EQ(vec_dot::gemm_dot(type, wr, act.data(), IN), gemm);
                ASSERT_EQ(out[r * OUT + o], gemm);
                if (r == 0) {
                    ASSERT_EQ(one[o], dot);
                }
                EXPECT_NEAR(gemm, dot, 1e-4f * (1.0f + std::fabs(dot)));
                orders_differ += gemm != dot;
            }
        }
        EXPECT_GT(orders_differ, 0);  // the two float orders are really different
    }
    EXPECT_FALSE(vec_dot::gemm_order(GgmlType::F16, IN, 37));    // not whole tiles: dot's order
    EXPECT_FALSE(vec_dot::gemm_order(GgmlType::Q4_K, IN, OUT));  // no tinyBLAS kernel
}

}  // namespace
}  // namespace quantlens
