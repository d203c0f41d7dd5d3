// Fast kernels against their naive reference twins (kernels.h), on random data with
// shapes that exercise the edge cases: partial blocks, GQA groups, single rows.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "engine/kernels.h"

#include "support/random_data.h"

namespace quantlens {
namespace {

using test_support::kSgemmRelTol;
using test_support::max_rel_diff;
using test_support::random_vec;

// The fast kernels run OpenBLAS sgemm, which is set to one thread first, as the engine does.
class Kernels : public ::testing::Test {
  protected:
    static void SetUpTestSuite() { engine_init_blas(); }
};

// max_rel_diff of attention_forward against its reference twin on the same inputs.
float attention_error(const std::vector<float>& q, const std::vector<float>& k,
                      const std::vector<float>& v, int64_t B, int64_t T, int64_t H, int64_t KV,
                      int64_t D, const AttentionParams& p = {}) {
    std::vector<float> fast(B * T * H * D), ref(B * T * H * D);
    attention_forward(fast.data(), q.data(), k.data(), v.data(), B, T, H, KV, D, p);
    attention_forward_ref(ref.data(), q.data(), k.data(), v.data(), B, T, H, KV, D, p);
    return max_rel_diff(fast, ref);
}

TEST_F(Kernels, MatmulMatchesReference) {
    for (auto [N, IN, OUT] : {std::tuple<int64_t, int64_t, int64_t>{1, 256, 4096},
                              {7, 96, 33},
                              {300, 256, 768},
                              {64, 768, 256}}) {
        const auto x = random_vec(N * IN, 1), w = random_vec(OUT * IN, 2, 0.05f),
                   b = random_vec(OUT, 3);
        std::vector<float> fast(N * OUT), ref(N * OUT);
        matmul_forward(fast.data(), x.data(), w.data(), b.data(), N, IN, OUT);
        matmul_forward_ref(ref.data(), x.data(), w.data(), b.data(), N, IN, OUT);
        EXPECT_LT(max_rel_diff(fast, ref), kSgemmRelTol) << N << "x" << IN << "x" << OUT;
    }
}

TEST_F(Kernels, AttentionMatchesReference) {
    for (auto [B, T, H, KV, D] :
         {std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>{2, 150, 4, 2, 32},
          {1, 64, 4, 4, 16},
          {3, 1, 2, 1, 8},
          {1, 130, 6, 2, 64}}) {
        const auto q = random_vec(B * T * H * D, 4), k = random_vec(B * T * KV * D, 5),
                   v = random_vec(B * T * KV * D, 6);
        EXPECT_LT(attention_error(q, k, v, B, T, H, KV, D), kSgemmRelTol)
            << B << " " << T << " " << H << " " << KV;
    }
}

TEST_F(Kernels, WindowedSoftcappedAttentionMatchesReference) {
    // Gemma's attention: a custom scale, soft-capped scores and a sliding window, with query
    // blocks (64 rows) that start inside, at and beyond the window.
    for (auto [T, window, softcap] : {std::tuple<int64_t, int64_t, float>{150, 64, 3.0f},
                                      {130, 1, 0.0f},
                                      {200, 100, 50.0f},
                                      {40, 64, 2.0f}}) {
        const int64_t B = 2, H = 4, KV = 2, D = 32;
        const auto q = random_vec(B * T * H * D, 14, 2.0f), k = random_vec(B * T * KV * D, 15),
                   v = random_vec(B * T * KV * D, 16);
        AttentionParams p;
        p.scale = 1.0f / std::sqrt(24.0f);
        p.softcap = softcap;
        p.window = window;
        EXPECT_LT(attention_error(q, k, v, B, T, H, KV, D, p), kSgemmRelTol)
            << T << " " << window << " " << softcap;
    }
}

TEST_F(Kernels, AttentionWindowHidesOldKeys) {
    // With a window of 8, query 50 sees keys 43..50 only: changing key 42 leaves it alone.
    const int64_t B = 1, T = 60, H = 1, KV = 1, D = 8;
    auto q = random_vec(T * D, 17), k = random_vec(T * D, 18), v = random_vec(T * D, 19);
    AttentionParams p;
    p.window = 8;
    std::vector<float> a(T * D), b(T * D);
    attention_forward(a.data(), q.data(), k.data(), v.data(), B, T, H, KV, D, p);
    for (int64_t d = 0; d < D; ++d) k[42 * D + d] += 5.0f, v[42 * D + d] -= 3.0f;
    attention_forward(b.data(), q.data(), k.data(), v.data(), B, T, H, KV, D, p);
    for (int64_t d = 0; d < D; ++d) ASSERT_EQ(a[50 * D + d], b[50 * D + d]) << d;
    EXPECT_NE(a[49 * D], b[49 * D]);  // key 42 is within query 49's window
}

TEST_F(Kernels, AttentionIsCausal) {
    // Changing a later key/value must not change earlier outputs.
    const int64_t B = 1, T = 100, H = 2, KV = 1, D = 16;
    auto q = random_vec(T * H * D, 7), k = random_vec(T * KV * D, 8), v = random_vec(T * KV * D, 9);
    std::vector<float> a(T * H * D), b(T * H * D);
    attention_forward(a.data(), q.data(), k.data(), v.data(), B, T, H, KV, D);
    for (int64_t d = 0; d < D; ++d) k[80 * D + d] += 5.0f, v[80 * D + d] -= 3.0f;
    attention_forward(b.data(), q.data(), k.data(), v.data(), B, T, H, KV, D);
    for (int64_t i = 0; i < 80 * H * D; ++i) ASSERT_EQ(a[i], b[i]) << i;
    EXPECT_NE(a[80 * H * D], b[80 * H * D]);
}

TEST_F(Kernels, RopeModes) {
    // Position 0 is the identity; normal mode rotates (x0, x1) by pos·θ^0 = pos radians.
    const int64_t T = 3, H = 1, D = 4;
    std::vector<float> x = {1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0};
    const std::vector<double> freqs = {1.0, 0.01};  // θ^(-2i/D) for θ = 10000, D = 4
    rope_forward(x.data(), 1, T, H, D, freqs, false);
    EXPECT_FLOAT_EQ(x[0], 1.0f);
    EXPECT_NEAR(x[4], std::cos(1.0), 1e-6);
    EXPECT_NEAR(x[5], std::sin(1.0), 1e-6);
    std::vector<float> y = {1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0};
    rope_forward(y.data(), 1, T, H, D, freqs, true);
    EXPECT_NEAR(y[8], std::cos(2.0), 1e-6);  // neox pairs (x0, x2)
    EXPECT_NEAR(y[10], std::sin(2.0), 1e-6);
    EXPECT_EQ(y[9], 0.0f);
}

TEST_F(Kernels, PartialRopeAndAttentionFactor) {
    // Two of four channels rotate (R = 2): the others pass; cos/sin are scaled by mscale.
    const int64_t T = 2, H = 1, D = 4;
    std::vector<float> x = {1, 0, 7, 9, 1, 0, 7, 9};
    const std::vector<double> freqs = {1.0};
    rope_forward(x.data(), 1, T, H, D, freqs, true, false, 1.5);
    EXPECT_NEAR(x[4], 1.5 * std::cos(1.0), 1e-6);
    EXPECT_NEAR(x[5], 1.5 * std::sin(1.0), 1e-6);  // neox pairs (x0, x1) when R = 2
    EXPECT_EQ(x[6], 7.0f);
    EXPECT_EQ(x[7], 9.0f);
}

TEST_F(Kernels, GegluAndSoftcap) {
    // gelu_pytorch_tanh(1) = 0.8411920; × up 2.
    const std::vector<float> g = {1.0f, 0.0f, -3.0f}, u = {2.0f, 5.0f, 1.0f};
    std::vector<float> o(3);
    geglu_tanh_forward(o.data(), g.data(), u.data(), 3);
    EXPECT_NEAR(o[0], 2 * 0.8411920f, 1e-6);
    EXPECT_EQ(o[1], 0.0f);
    EXPECT_NEAR(o[2], -0.0036373f, 1e-6);
    std::vector<float> z = {0.0f, 30.0f, -1.0f};
    softcap_forward(z.data(), 3, 8.0f);
    EXPECT_EQ(z[0], 0.0f);
    EXPECT_NEAR(z[1], 8.0 * std::tanh(30.0 / 8.0), 1e-5);
    EXPECT_NEAR(z[2], 8.0 * std::tanh(-1.0 / 8.0), 1e-6);
}

TEST_F(Kernels, RmsnormAndSwiglu) {
    const std::vector<float> x = {3, 4}, w = {1, 2};
    std::vector<float> o(2);
    rmsnorm_forward(o.data(), x.data(), w.data(), 1, 2, 0.0f);
    const float rms = std::sqrt(12.5f);
    EXPECT_NEAR(o[0], 3 / rms, 1e-6);
    EXPECT_NEAR(o[1], 8 / rms, 1e-6);
    const std::vector<float> g = {0.0f, 2.0f}, u = {5.0f, 3.0f};
    swiglu_forward(o.data(), g.data(), u.data(), 2);
    EXPECT_EQ(o[0], 0.0f);
    EXPECT_NEAR(o[1], 2.0f / (1.0f + std::exp(-2.0f)) * 3.0f, 1e-6);
}

TEST_F(Kernels, GgmlActivationRounding) {
    EXPECT_EQ(ggml_act_rounding(GgmlType::Q4_K), ActRounding::Q8_K);
    EXPECT_EQ(ggml_act_rounding(GgmlType::Q4_0), ActRounding::Q8_0);
    EXPECT_EQ(ggml_act_rounding(GgmlType::F16), ActRounding::F16);
    EXPECT_EQ(ggml_act_rounding(GgmlType::F32), ActRounding::None);
    // Q8_K: the largest magnitude (here −3) is exact, others land on multiples of d = 3/127.
    std::vector<float> x = random_vec(256, 11);
    x[17] = -3.0f;
    std::vector<float> y = x;
    round_activations(y.data(), 1, 256, ActRounding::Q8_K);
    const float d = 3.0f / 127.0f;
    EXPECT_FLOAT_EQ(y[17], -3.0f);
    for (int i = 0; i < 256; ++i) {
        EXPECT_LE(std::fabs(y[i] - x[i]), 0.5f * d * 1.0001f) << i;
        EXPECT_NEAR(y[i] / d, std::round(y[i] / d), 1e-3) << i;
    }
    // Q8_0: 32-wide blocks with their own scale.
    std::vector<float> z(64, 0.001f);
    z[40] = 100.0f;
    round_activations(z.data(), 1, 64, ActRounding::Q8_0);
    EXPECT_NEAR(z[0], 0.001f, 1e-5f);  // first block keeps its own (F16-subnormal) scale
    EXPECT_EQ(z[33], 0.0f);            // second block is dominated by 100
}

}  // namespace
}  // namespace quantlens
