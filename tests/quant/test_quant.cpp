// The dispatcher's contract (quant.h): traits, type-list parsing, input validation (row
// lengths, NaN/Inf, missing importance), llama.cpp's fallback rules, and that threading and
// fake quantization do not change results. Bit-exactness itself is test_golden.cpp's job.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "quant/quant.h"
#include "support/error_of.h"

namespace quantlens {
namespace {

std::vector<float> wavy(int64_t n, float scale = 1.0f) {
    std::vector<float> x(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
        x[static_cast<size_t>(i)] =
            scale * (std::sin(0.013f * i) + 0.3f * std::cos(0.71f * i) + 0.05f * (i % 7));
    return x;
}

using test_support::error_of;

TEST(QuantTraits, MatchGgmlBlockLayouts) {
    const QuantTraits& q4k = quant_traits(GgmlType::Q4_K);
    EXPECT_STREQ(q4k.name, "Q4_K");
    EXPECT_EQ(q4k.block_size, 256);
    EXPECT_EQ(q4k.bytes_per_block, 144u);
    EXPECT_DOUBLE_EQ(q4k.bits_per_weight, 4.5);
    EXPECT_DOUBLE_EQ(quant_traits(GgmlType::Q6_K).bits_per_weight, 6.5625);
    EXPECT_DOUBLE_EQ(quant_traits(GgmlType::Q8_0).bits_per_weight, 8.5);
    EXPECT_DOUBLE_EQ(quant_traits(GgmlType::IQ2_XXS).bits_per_weight, 2.0625);
    EXPECT_TRUE(quant_traits(GgmlType::IQ2_XXS).needs_importance);
    EXPECT_TRUE(quant_traits(GgmlType::IQ1_S).needs_importance);
    EXPECT_FALSE(quant_traits(GgmlType::IQ1_M).needs_importance);
    EXPECT_FALSE(quant_traits(GgmlType::Q4_K).needs_importance);
    for (GgmlType t : {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q4_1,
                       GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q2_K,
                       GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K})
        EXPECT_TRUE(quant_traits(t).implemented) << quant_traits(t).name;
    EXPECT_FALSE(quant_traits(GgmlType::Q8_K).implemented);  // not a storage target
}

TEST(QuantTraits, QuantizableTypesAreOrderedByBitsPerWeight) {
    const auto types = quantizable_types();
    ASSERT_GE(types.size(), 13u);
    for (size_t i = 1; i < types.size(); ++i)
        EXPECT_LE(quant_traits(types[i - 1]).bits_per_weight,
                  quant_traits(types[i]).bits_per_weight);
    EXPECT_EQ(types.back(), GgmlType::F32);
    for (GgmlType t : types) EXPECT_TRUE(quant_traits(t).implemented);
}

TEST(ParseTypeList, AcceptsAnyCaseAndSpacesAndRejectsUnknownNames) {
    EXPECT_EQ(
        parse_type_list("q4_k, Q6_K ,iq4_xs,F16"),
        (std::vector<GgmlType>{GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::IQ4_XS, GgmlType::F16}));
    EXPECT_EQ(parse_type_list("Q8_0,q8_0"), std::vector<GgmlType>{GgmlType::Q8_0});
    EXPECT_EQ(parse_type_list("all"), quantizable_types());
    EXPECT_NE(error_of([] { parse_type_list("Q4_K,Q4_Z"); }).find("'Q4_Z'"), std::string::npos);
    EXPECT_NE(error_of([] { parse_type_list("I32"); }).find("unknown quantization type"),
              std::string::npos);
    EXPECT_NE(error_of([] { parse_type_list(" , "); }), "");
}

TEST(Quantize, RejectsRowLengthsTheBlockDoesNotDivide) {
    const auto x = wavy(2 * 300);
    std::vector<uint8_t> q(4096);
    const std::string msg = error_of([&] { quantize(GgmlType::Q4_K, x.data(), q.data(), 2, 300); });
    EXPECT_NE(msg.find("300"), std::string::npos) << msg;
    EXPECT_NE(msg.find("256"), std::string::npos) << msg;
    EXPECT_NE(error_of([&] { quantize(GgmlType::Q8_0, x.data(), q.data(), 1, 40); }), "");
    std::vector<float> out(600);
    EXPECT_NE(error_of([&] { dequantize(GgmlType::Q6_K, q.data(), out.data(), 2, 300); }), "");
}

TEST(Quantize, RejectsNonFiniteWeightsNamingTheirPosition) {
    for (float bad :
         {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
          -std::numeric_limits<float>::infinity()}) {
        auto x = wavy(4 * 256);
        x[2 * 256 + 17] = bad;
        std::vector<uint8_t> q(4 * 210);
        const std::string msg =
            error_of([&] { quantize(GgmlType::Q6_K, x.data(), q.data(), 4, 256); });
        EXPECT_NE(msg.find("row 2, column 17"), std::string::npos) << msg;
        std::vector<float> y(x.size());
        EXPECT_NE(error_of([&] { fake_quantize(GgmlType::Q4_0, x.data(), y.data(), 4, 256); }), "");
    }
}

TEST(Quantize, RejectsBadImportanceAndTypesThatNeedIt) {
    auto x = wavy(256);
    std::vector<uint8_t> q(1024);
    EXPECT_NE(error_of([&] {
                  quantize(GgmlType::IQ2_XXS, x.data(), q.data(), 1, 256);
              }).find("importance"),
              std::string::npos);
    std::vector<float> w(256, 1.0f);
    w[5] = std::numeric_limits<float>::quiet_NaN();
    EXPECT_NE(error_of([&] { quantize(GgmlType::Q4_K, x.data(), q.data(), 1, 256, w.data()); }),
              "");
    w[5] = -1.0f;
    EXPECT_NE(error_of([&] { quantize(GgmlType::Q4_K, x.data(), q.data(), 1, 256, w.data()); }),
              "");
}

// Rows are independent in every format, so the thread count must not change a byte.
TEST(Quantize, ThreadCountDoesNotChangeBytes) {
    const int64_t rows = 96, cols = 512;
    const auto x = wavy(rows * cols, 0.02f);
    std::vector<float> imp(static_cast<size_t>(cols));
    for (int64_t j = 0; j < cols; ++j) imp[static_cast<size_t>(j)] = 0.5f + (j % 13) * 0.1f;
    const int saved = num_threads();
    for (GgmlType t : {GgmlType::Q4_K, GgmlType::Q3_K, GgmlType::Q5_1, GgmlType::F16}) {
        const size_t bytes = ggml_row_size(t, cols) * rows;
        std::vector<uint8_t> one(bytes), many(bytes);
        set_num_threads(1);
        ASSERT_EQ(quantize(t, x.data(), one.data(), rows, cols, imp.data()), bytes);
        set_num_threads(4);
        ASSERT_EQ(quantize(t, x.data(), many.data(), rows, cols, imp.data()), bytes);
        EXPECT_EQ(one, many) << quant_traits(t).name;
    }
    set_num_threads(saved);
}

TEST(FakeQuantize, EqualsQuantizeThenDequantizeAndIsClose) {
    const int64_t rows = 8, cols = 256;
    const auto x = wavy(rows * cols);
    for (GgmlType t :
         {GgmlType::Q2_K, GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q8_0, GgmlType::BF16}) {
        std::vector<uint8_t> q(ggml_row_size(t, cols) * rows);
        std::vector<float> a(x.size()), b(x.size());
        quantize(t, x.data(), q.data(), rows, cols);
        dequantize(t, q.data(), a.data(), rows, cols);
        fake_quantize(t, x.data(), b.data(), rows, cols);
        EXPECT_EQ(a, b) << quant_traits(t).name;
        double e2 = 0, x2 = 0;
        for (size_t i = 0; i < x.size(); ++i) {
            e2 += (x[i] - a[i]) * (x[i] - a[i]);
            x2 += x[i] * x[i];
        }
        // Relative error bounds per bit width (about 2x what these smooth rows give).
        const double bound = t == GgmlType::Q2_K   ? 0.2
                             : t == GgmlType::Q4_K ? 0.06
                             : t == GgmlType::Q6_K ? 0.025
                                                   : 0.006;
        EXPECT_LT(std::sqrt(e2 / x2), bound) << quant_traits(t).name << " " << std::sqrt(e2 / x2);
    }
}

TEST(FallbackType, FollowsLlamaCppRules) {
    EXPECT_EQ(fallback_type(GgmlType::Q4_K, 4096), GgmlType::Q4_K);
    EXPECT_EQ(fallback_type(GgmlType::Q4_K, 896), GgmlType::Q5_0);
    EXPECT_EQ(fallback_type(GgmlType::Q5_K, 896), GgmlType::Q5_1);
    EXPECT_EQ(fallback_type(GgmlType::Q6_K, 896), GgmlType::Q8_0);
    EXPECT_EQ(fallback_type(GgmlType::Q2_K, 352), GgmlType::IQ4_NL);
    EXPECT_EQ(fallback_type(GgmlType::Q3_K, 352), GgmlType::IQ4_NL);
    EXPECT_EQ(fallback_type(GgmlType::IQ4_XS, 128), GgmlType::IQ4_NL);
    EXPECT_EQ(fallback_type(GgmlType::IQ2_XXS, 128), GgmlType::IQ4_NL);
    EXPECT_EQ(fallback_type(GgmlType::IQ1_M, 128), GgmlType::IQ4_NL);
    EXPECT_EQ(fallback_type(GgmlType::TQ1_0, 128), GgmlType::Q4_0);
    EXPECT_EQ(fallback_type(GgmlType::TQ2_0, 128), GgmlType::Q4_0);
    for (GgmlType t :
         {GgmlType::IQ2_XS, GgmlType::IQ2_S, GgmlType::IQ3_XXS, GgmlType::IQ3_S, GgmlType::IQ1_S})
        EXPECT_EQ(fallback_type(t, 128), GgmlType::IQ4_NL) << ggml_type_display_name(t);
    EXPECT_EQ(fallback_type(GgmlType::Q4_K, 48), GgmlType::F16);  // 32 does not divide either
    EXPECT_EQ(fallback_type(GgmlType::Q8_0, 40), GgmlType::F16);
    EXPECT_EQ(fallback_type(GgmlType::MXFP4, 40), GgmlType::F16);
    EXPECT_TRUE(type_fits_row(GgmlType::Q4_0, 352));
    EXPECT_FALSE(type_fits_row(GgmlType::Q4_K, 352));
    EXPECT_TRUE(type_fits_row(GgmlType::F16, 7));
}

TEST(Quantize, FloatTypesRoundTheWayGgmlDoes) {
    const std::vector<float> x = {1.0f, -2.5f,   65504.0f, 1e-8f,
                                  0.1f, 3.0e38f, -0.0f,    1.00048828125f};
    std::vector<uint16_t> h(x.size());
    quantize(GgmlType::F16, x.data(), h.data(), 1, static_cast<int64_t>(x.size()));
    EXPECT_EQ(h[0], 0x3c00);
    EXPECT_EQ(h[1], 0xc100);
    EXPECT_EQ(h[2], 0x7bff);
    EXPECT_EQ(h[5], 0x7c00);  // overflow → inf
    EXPECT_EQ(h[7], 0x3c00);  // tie → even
    quantize(GgmlType::BF16, x.data(), h.data(), 1, static_cast<int64_t>(x.size()));
    EXPECT_EQ(h[0], 0x3f80);
    EXPECT_EQ(h[4], 0x3dcd);  // 0.1f rounds up
}

}  // namespace
}  // namespace quantlens
