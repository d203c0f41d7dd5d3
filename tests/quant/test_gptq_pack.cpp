// GPTQ's own formats, packed as GPTQModel's checkpoint (quant/gptq_pack.h, core/gptq_format.h):
//  - golden words: 4-bit and 3-bit qweight/qzeros for weights whose codes are known by hand,
//    the 3-bit words from AutoGPTQ's literal packing loop (computed outside quantlens);
//    the famous 0x77777777 qzeros of symmetric 4-bit; asymmetric zeros;
//  - checkpoint bytes and bits per weight of gptq4g128 on a 256 × 256 Linear (by hand);
//  - unpacking decodes f16(scale)·(q − zero) and stays within one step of the weight;
//  - GPTQ with a diagonal Hessian packs the plain rounding's words exactly;
//  - on correlated inputs GPTQ lowers the output error tr(E·H·Eᵀ) against plain rounding
//    for every bits/group/sym combination, in column order and act order; act order writes
//    a permuted g_idx;
//  - names round-trip and shapes GPTQ cannot store are refused naming the tensor.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/gptq_format.h"
#include "core/half.h"
#include "quant/gptq.h"
#include "quant/gptq_pack.h"

namespace quantlens {
namespace {

uint32_t word(const std::vector<int32_t>& v, size_t i) {
    return static_cast<uint32_t>(v[i]);
}

// 32 × 32, every row: w0 = −amax (rounds half-to-even onto code 0), then values whose codes
// are (i % period) + 1.
std::vector<float> known_rows(float amax, int period, int offset) {
    std::vector<float> w(32 * 32);
    for (int o = 0; o < 32; ++o) {
        w[o * 32] = -amax;
        for (int i = 1; i < 32; ++i) w[o * 32 + i] = static_cast<float>(i % period - offset);
    }
    return w;
}

TEST(GptqPack, Golden4BitSymmetric) {
    // amax 7.5: scale 15/15 = 1, zero 8; code of i ≥ 1 is (i % 15) + 1, of i = 0 is 0.
    const auto w = known_rows(7.5f, 15, 7);
    const GptqPacked p = gptq_pack_rtn({4, 32, true}, w.data(), 32, 32);
    ASSERT_EQ(p.qweight.size(), 4u * 32u);
    for (size_t o = 0; o < 32; ++o) {  // qweight is (in/8, out): word r of column o at r·32 + o
        EXPECT_EQ(word(p.qweight, 0 * 32 + o), 0x87654320u);
        EXPECT_EQ(word(p.qweight, 1 * 32 + o), 0x1FEDCBA9u);
        EXPECT_EQ(word(p.qweight, 2 * 32 + o), 0x98765432u);
        EXPECT_EQ(word(p.qweight, 3 * 32 + o), 0x21FEDCBAu);
        EXPECT_EQ(p.scales[o], 0x3C00);  // f16 1.0
    }
    ASSERT_EQ(p.qzeros.size(), 4u);  // 1 group × 32 outputs / 8
    for (size_t k = 0; k < 4; ++k) EXPECT_EQ(word(p.qzeros, k), 0x77777777u);
    for (int32_t g : p.g_idx) EXPECT_EQ(g, 0);
}

TEST(GptqPack, Golden3BitMatchesAutoGptqLoop) {
    // amax 3.5: scale 7/7 = 1, zero 4; codes (i % 7) + 1, code 0 first.
    const auto w = known_rows(3.5f, 7, 3);
    const GptqPacked p = gptq_pack_rtn({3, -1, true}, w.data(), 32, 32);
    ASSERT_EQ(p.qweight.size(), 3u * 32u);
    for (size_t o = 0; o < 32; ++o) {
        EXPECT_EQ(word(p.qweight, 0 * 32 + o), 0x1a3f58d0u);
        EXPECT_EQ(word(p.qweight, 1 * 32 + o), 0xfd6347ebu);
        EXPECT_EQ(word(p.qweight, 2 * 32 + o), 0x8d1fac68u);
    }
    ASSERT_EQ(p.qzeros.size(), 3u);  // zero 4 stored as 3, 32 outputs in 3 words
    EXPECT_EQ(word(p.qzeros, 0), 0xdb6db6dbu);
    EXPECT_EQ(word(p.qzeros, 1), 0xb6db6db6u);
    EXPECT_EQ(word(p.qzeros, 2), 0x6db6db6du);
    for (int i = 0; i < 32; ++i) EXPECT_EQ(gptq_packed_code(p, 5, i), i == 0 ? 0 : i % 7 + 1);
}

TEST(GptqPack, GoldenAsymmetricZeros) {
    // Row range [−3, 12]: scale 15/15 = 1, zero round(3) = 3, stored 2; code = x + 3.
    std::vector<float> w(32 * 64);
    for (int o = 0; o < 32; ++o)
        for (int i = 0; i < 64; ++i) w[o * 64 + i] = static_cast<float>(i % 16 - 3);
    const GptqPacked p = gptq_pack_rtn({4, 32, false}, w.data(), 32, 64);
    ASSERT_EQ(p.qzeros.size(), 2u * 4u);
    for (size_t k = 0; k < p.qzeros.size(); ++k) EXPECT_EQ(word(p.qzeros, k), 0x22222222u);
    EXPECT_EQ(word(p.qweight, 0), 0x76543210u);  // codes 0..7 of column 0
    EXPECT_EQ(word(p.qweight, 32), 0xFEDCBA98u);
    std::vector<float> back(w.size());
    gptq_unpack(p, back.data());
    EXPECT_EQ(back, w);  // every value on the grid decodes exactly
}

TEST(GptqPack, ZeroOfAsymmetricGroupIsStorable) {
    // All weights ≥ 0: GPTQ's zero would be 0, which v1 cannot store; it is raised to 1.
    std::vector<float> w(32 * 32, 0.5f);
    w[0] = 15.0f;
    const GptqPacked p = gptq_pack_rtn({4, 32, false}, w.data(), 32, 32);
    EXPECT_EQ(gptq_packed_zero(p, 0, 0), 1);
    EXPECT_EQ(word(p.qzeros, 0) & 0xF, 0u);
}

TEST(GptqFormat, BytesAndBitsPerWeight) {
    // 256 × 256 at 4-bit g128: qweight 32 768 + qzeros 2·32·4 = 256 + scales 2·256·2 = 1024
    // + g_idx 1024 bytes = 35 072 → 4.28125 bits per weight.
    EXPECT_EQ(gptq_module_bytes({4, 128, true}, 256, 256), 35072u);
    EXPECT_DOUBLE_EQ(8.0 * 35072 / 65536, 4.28125);
    // Per channel 8-bit, 256 out × 768 in: 196 608 + 256 + 512 + 3072.
    EXPECT_EQ(gptq_module_bytes({8, -1, false}, 256, 768), 200448u);
    std::vector<float> w(256 * 256, 0.25f);
    EXPECT_EQ(gptq_packed_bytes(gptq_pack_rtn({4, 128, true}, w.data(), 256, 256)), 35072u);
}

TEST(GptqFormat, NamesAndShapes) {
    EXPECT_EQ(gptq_format_menu().size(), 32u);
    for (const auto& f : gptq_format_menu())
        EXPECT_EQ(gptq_format_from_name(gptq_format_name(f)), f);
    EXPECT_EQ(gptq_format_name({4, 128, true}), "gptq4g128");
    EXPECT_EQ(gptq_format_name({3, -1, false}), "gptq3pca");
    EXPECT_FALSE(gptq_format_from_name("gptq5g128").has_value());
    EXPECT_FALSE(gptq_format_from_name("gptq4g16").has_value());
    EXPECT_THROW(parse_gptq_format_list("gptq4g128,gptq6g128"), Error);
    std::vector<float> w(32 * 96, 1.0f);
    try {
        gptq_pack_rtn({4, 64, true}, w.data(), 32, 96, "blk.0.ffn_down.weight");
        FAIL() << "a group that does not divide the row was accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("blk.0.ffn_down.weight"), std::string::npos);
    }
    EXPECT_THROW(gptq_pack_rtn({4, 32, true}, w.data(), 16, 96), Error);  // 16 outputs
}

std::vector<float> gaussian(int64_t n, uint32_t seed, float sigma = 0.05f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, sigma);
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = d(rng);
    return v;
}

TEST(GptqPack, DecodesWithinOneStep) {
    const int64_t out = 64, in = 128;
    const auto w = gaussian(out * in, 3);
    for (const auto& f : gptq_format_menu()) {
        const GptqPacked p = gptq_pack_rtn(f, w.data(), out, in);
        std::vector<float> back(w.size());
        gptq_unpack(p, back.data());
        for (int64_t o = 0; o < out; ++o)
            for (int64_t i = 0; i < in; ++i) {
                const int64_t g = p.g_idx[static_cast<size_t>(i)];
                const float step = f16_to_f32(p.scales[static_cast<size_t>(g * out + o)]);
                const float x = w[static_cast<size_t>(o * in + i)];
                // Half a step inside the grid; up to one at its ends: symmetric grids lack the
                // top code (zero 2^(b−1) leaves 2^(b−1) − 1 above), asymmetric ones shift by
                // the rounding of the zero.
                const float tol = step * 1.001f;
                ASSERT_LE(std::fabs(back[static_cast<size_t>(o * in + i)] - x), tol)
                    << gptq_format_name(f) << " at " << o << "," << i;
            }
    }
}

// H = XᵀX of correlated inputs (a shared factor per 8 columns plus noise).
std::vector<double> correlated_hessian(int64_t n, int64_t rows, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<double> d(0.0, 1.0);
    std::vector<double> x(static_cast<size_t>(rows * n));
    for (int64_t r = 0; r < rows; ++r) {
        std::vector<double> common(static_cast<size_t>(n / 8 + 1));
        for (auto& c : common) c = d(rng);
        for (int64_t j = 0; j < n; ++j)
            x[static_cast<size_t>(r * n + j)] =
                (1.0 + 0.05 * static_cast<double>(j % 13)) * (common[j / 8] + 0.3 * d(rng));
    }
    std::vector<double> h(static_cast<size_t>(n * n), 0.0);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t i = 0; i < n; ++i)
            for (int64_t j = i; j < n; ++j)
                h[static_cast<size_t>(i * n + j)] +=
                    x[static_cast<size_t>(r * n + i)] * x[static_cast<size_t>(r * n + j)];
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < i; ++j)
            h[static_cast<size_t>(i * n + j)] = h[static_cast<size_t>(j * n + i)];
    return h;
}

double output_error(const std::vector<float>& w, const std::vector<float>& q,
                    const std::vector<double>& h, int64_t out, int64_t n) {
    double s = 0;
    std::vector<double> e(static_cast<size_t>(n));
    for (int64_t o = 0; o < out; ++o) {
        for (int64_t j = 0; j < n; ++j)
            e[static_cast<size_t>(j)] =
                w[static_cast<size_t>(o * n + j)] - q[static_cast<size_t>(o * n + j)];
        for (int64_t i = 0; i < n; ++i)
            for (int64_t j = 0; j < n; ++j)
                s += e[static_cast<size_t>(i)] * h[static_cast<size_t>(i * n + j)] *
                     e[static_cast<size_t>(j)];
    }
    return s;
}

TEST(GptqPack, DiagonalHessianGivesPlainRounding) {
    const int64_t out = 32, in = 128;
    const auto w = gaussian(out * in, 11);
    std::vector<double> h(static_cast<size_t>(in * in), 0.0);
    for (int64_t j = 0; j < in; ++j) h[static_cast<size_t>(j * in + j)] = 2.0;
    const GptqFactor factor = gptq_factor(h.data(), in);
    for (const auto& f : gptq_format_menu()) {
        const GptqPacked a = gptq_pack_rtn(f, w.data(), out, in);
        const GptqPacked b = gptq_pack_gptq(f, w.data(), out, in, factor);
        EXPECT_EQ(a.qweight, b.qweight) << gptq_format_name(f);
        EXPECT_EQ(a.qzeros, b.qzeros) << gptq_format_name(f);
        EXPECT_EQ(a.scales, b.scales) << gptq_format_name(f);
        EXPECT_EQ(a.g_idx, b.g_idx) << gptq_format_name(f);
    }
}

TEST(GptqPack, ErrorFeedbackLowersOutputError) {
    const int64_t out = 32, in = 128;
    const auto w = gaussian(out * in, 5);
    const auto h = correlated_hessian(in, 512, 7);
    GptqOptions ao;
    ao.act_order = true;
    const GptqFactor plain_order = gptq_factor(h.data(), in);
    const GptqFactor act_order = gptq_factor(h.data(), in, ao);
    for (const auto& f : gptq_format_menu()) {
        std::vector<float> rtn(w.size()), g(w.size()), ga(w.size());
        gptq_unpack(gptq_pack_rtn(f, w.data(), out, in), rtn.data());
        gptq_unpack(gptq_pack_gptq(f, w.data(), out, in, plain_order), g.data());
        const GptqPacked pa = gptq_pack_gptq(f, w.data(), out, in, act_order);
        gptq_unpack(pa, ga.data());
        EXPECT_TRUE(pa.desc_act);
        const double e_rtn = output_error(w, rtn, h, out, in);
        // At 8 bits the rounding error is tiny, and GPTQ's gain as well; below, at least 10 %.
        const double need = f.bits == 8 ? 0.99 : 0.9;
        EXPECT_LT(output_error(w, g, h, out, in), need * e_rtn) << gptq_format_name(f);
        EXPECT_LT(output_error(w, ga, h, out, in), need * e_rtn) << gptq_format_name(f) << " act";
    }
    // Act order groups columns in the permuted order: g_idx is then not i / group.
    const GptqPacked pa = gptq_pack_gptq({4, 32, true}, w.data(), out, in, act_order);
    bool permuted = false;
    for (int64_t i = 0; i < in; ++i) permuted |= pa.g_idx[static_cast<size_t>(i)] != i / 32;
    EXPECT_TRUE(permuted);
}

}  // namespace
}  // namespace quantlens
