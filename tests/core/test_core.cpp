#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/ggml_type.h"
#include "core/half.h"
#include "core/parallel.h"

using namespace quantlens;

TEST(Half, F16RoundTripsEveryHalf) {
    for (uint32_t h = 0; h < 0x10000; ++h) {
        float f = f16_to_f32(static_cast<uint16_t>(h));
        if (std::isnan(f)) continue;
        EXPECT_EQ(f32_to_f16(f), h) << h;
    }
}

TEST(Half, F16RoundsToNearestEven) {
    EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
    EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
    EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);            // halfway to inf rounds up
    EXPECT_EQ(f32_to_f16(1.0f + 1.0f / 2048), 0x3c00);  // tie → even
    EXPECT_EQ(f32_to_f16(1.0f + 3.0f / 2048), 0x3c02);  // tie → even (up)
    EXPECT_EQ(f32_to_f16(5.96046448e-8f), 0x0001);      // smallest subnormal
    EXPECT_EQ(f32_to_f16(2.98023224e-8f), 0x0000);      // exactly half of it: tie → 0
    EXPECT_EQ(f32_to_f16(-2.0f), 0xc000);
}

TEST(Half, Bf16) {
    EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
    EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
    EXPECT_EQ(f32_to_bf16(bits_float(0x3f808000u)), 0x3f80);  // tie → even
    EXPECT_EQ(f32_to_bf16(bits_float(0x3f818000u)), 0x3f82);
}

TEST(Parallel, CoversRangeOnceAndPropagatesErrors) {
    std::vector<std::atomic<int>> hits(10007);
    parallel_for(hits.size(), [&](size_t b, size_t e) {
        for (size_t i = b; i < e; ++i) hits[i]++;
    });
    for (auto& h : hits) EXPECT_EQ(h.load(), 1);
    EXPECT_THROW(parallel_for(100, [](size_t, size_t) { fail("boom"); }), Error);
}

// Many tiny back-to-back jobs on more threads than cores: a worker still finishing one job must
// never take a chunk of the next. With one counter shared by all jobs it did, ran that chunk twice
// and left the next job's count short: verify hung once, and 200,000 jobs here hung 2 runs of 6.
TEST(Parallel, BackToBackJobsRunEveryChunkOnce) {
    set_num_threads(16);
    std::vector<std::atomic<int>> hits(64);
    for (int job = 0; job < 50000; ++job) {
        const size_t n = 2 + static_cast<size_t>(job % 7);
        parallel_for(n, [&](size_t b, size_t e) {
            for (size_t i = b; i < e; ++i) hits[i]++;
        });
        for (size_t i = 0; i < n; ++i)
            ASSERT_EQ(hits[i].exchange(0), 1) << "job " << job << " index " << i;
    }
    set_num_threads(0);
}

TEST(GgmlType, TableMatchesGgmlIdsAndSizes) {
    EXPECT_EQ(ggml_type_info(GgmlType::Q4_K).bytes_per_block, 144u);
    EXPECT_EQ(ggml_type_from_name("Q6_K"), GgmlType::Q6_K);
    EXPECT_EQ(ggml_type_from_name("iq4_xs"), GgmlType::IQ4_XS);
    EXPECT_FALSE(ggml_type_from_name("q9_z").has_value());
    EXPECT_EQ(ggml_row_size(GgmlType::Q8_0, 256), 8u * 34u);
    EXPECT_THROW(ggml_row_size(GgmlType::Q4_K, 896), Error);
    EXPECT_EQ(ggml_type_info(99u), nullptr);
}
