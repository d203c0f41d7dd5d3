// The converter's rearrangements of Gated DeltaNet tensors (model/deltanet_layout.h), worked
// by hand from convert_hf_to_gguf (conversion/qwen.py): Qwen3NextModel's in_proj_qkvz split
// and _LinearAttentionVReorderBase's grouped → tiled value heads, on 2 q/k heads with 2 value
// heads each.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "model/deltanet_layout.h"

namespace quantlens {
namespace {

ModelConfig hybrid(bool tiled, int64_t dk, int64_t dv) {
    ModelConfig c;
    c.layer_linear = {true};
    c.ssm_k_heads = 2;
    c.ssm_v_heads = 4;
    c.ssm_k_dim = dk;
    c.ssm_v_dim = dv;
    c.ssm_conv_kernel = 2;
    c.ssm_v_tiled = tiled;
    return c;
}

using V = std::vector<int64_t>;

TEST(DeltaNetLayout, Qwen3NextSplitsQkvzPerHeadGroup) {
    // in_proj_qkvz rows, per q/k head g: [q (1), k (1), v (2 heads × 1), z (2)] → 6 rows each.
    const ModelConfig c = hybrid(false, 1, 1);
    const auto qkv = deltanet_hf_gather(c, "attn_qkv", "linear_attn.in_proj_qkvz", {12, 3});
    ASSERT_TRUE(qkv);
    EXPECT_EQ(qkv->rows, (V{0, 6, 1, 7, 2, 3, 8, 9}));  // q all heads, k all heads, v all heads
    EXPECT_EQ(qkv->ne, (V{3, 8}));
    const auto z = deltanet_hf_gather(c, "attn_gate", "linear_attn.in_proj_qkvz", {12, 3});
    ASSERT_TRUE(z);
    EXPECT_EQ(z->rows, (V{4, 5, 10, 11}));
    EXPECT_EQ(z->ne, (V{3, 4}));
    // Grouped heads stay: no gather for the out projection or dt_bias; conv is squeezed.
    EXPECT_FALSE(deltanet_hf_gather(c, "ssm_out", "linear_attn.out_proj", {3, 4}));
    EXPECT_FALSE(deltanet_hf_gather(c, "ssm_dt.bias", "linear_attn.dt_bias", {4}));
    const auto conv = deltanet_hf_gather(c, "ssm_conv1d", "linear_attn.conv1d", {8, 1, 2});
    ASSERT_TRUE(conv);
    EXPECT_TRUE(conv->rows.empty());
    EXPECT_EQ(conv->ne, (V{2, 8}));
}

TEST(DeltaNetLayout, Qwen35ReordersValueHeadsToTiledOrder) {
    // Grouped heads (g0v0, g0v1, g1v0, g1v1) become tiled (g0v0, g1v0, g0v1, g1v1).
    const ModelConfig c = hybrid(true, 1, 2);
    const auto qkv = deltanet_hf_gather(c, "attn_qkv", "linear_attn.in_proj_qkv", {12, 3});
    ASSERT_TRUE(qkv);  // q (2 rows), k (2 rows), then v heads of 2 rows each
    EXPECT_EQ(qkv->rows, (V{0, 1, 2, 3, 4, 5, 8, 9, 6, 7, 10, 11}));
    const auto z = deltanet_hf_gather(c, "attn_gate", "linear_attn.in_proj_z", {8, 3});
    EXPECT_EQ(z->rows, (V{0, 1, 4, 5, 2, 3, 6, 7}));
    const auto b = deltanet_hf_gather(c, "ssm_beta", "linear_attn.in_proj_b", {4, 3});
    EXPECT_EQ(b->rows, (V{0, 2, 1, 3}));
    const auto out = deltanet_hf_gather(c, "ssm_out", "linear_attn.out_proj", {3, 8});
    EXPECT_EQ(out->cols, (V{0, 1, 4, 5, 2, 3, 6, 7}));
    EXPECT_EQ(out->ne, (V{8, 3}));
    const auto conv = deltanet_hf_gather(c, "ssm_conv1d", "linear_attn.conv1d", {12, 1, 2});
    EXPECT_EQ(conv->rows, (V{0, 1, 2, 3, 4, 5, 8, 9, 6, 7, 10, 11}));
    // A_log: reordered and mapped to −exp(A_log), as 1-D values.
    const auto a = deltanet_hf_gather(c, "ssm_a", "linear_attn.A_log", {4});
    ASSERT_TRUE(a);
    EXPECT_TRUE(a->neg_exp);
    const std::vector<float> a_log{0.0f, 1.0f, 2.0f, 3.0f};
    std::vector<float> ssm_a(4);
    apply_hf_gather(*a, a_log.data(), 4, 1, ssm_a.data());
    EXPECT_FLOAT_EQ(ssm_a[0], -1.0f);
    EXPECT_FLOAT_EQ(ssm_a[1], -std::exp(2.0f));
    EXPECT_FLOAT_EQ(ssm_a[2], -std::exp(1.0f));
    EXPECT_FLOAT_EQ(ssm_a[3], -std::exp(3.0f));
    // The gather applied to a matrix: out_proj columns.
    std::vector<float> w(24), got(24);
    for (int i = 0; i < 24; ++i) w[i] = static_cast<float>(i);
    apply_hf_gather(*out, w.data(), 3, 8, got.data());
    EXPECT_EQ(got[2], 4.0f);    // row 0, column 2 ← column 4
    EXPECT_EQ(got[10], 12.0f);  // row 1, column 2 ← column 4
}

}  // namespace
}  // namespace quantlens
