// The gpt-oss family (src/model/families/gptoss.cpp): config.json as the released checkpoints
// write it, the HF → GGUF tensor names and GGUF keys of llama.cpp's converter (GptOssModel
// in convert_hf_to_gguf.py and TextModel.set_gguf_parameters, read from its source), YaRN's
// frequency blend, and the MXFP4 repacking from the released *_blocks/*_scales layout into
// ggml's block_mxfp4 rows, checked against the OCP MX definition written out here.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "formats/gguf.h"
#include "model/families/family.h"
#include "model/names.h"
#include "model/sources.h"
#include "quant/quant.h"
#include "support/test_data.h"

using namespace quantlens;

namespace {

// The released gpt-oss-20b config.json, scaled down (4 layers, 8 experts).
std::string gptoss_config(const std::string& extra = "") {
    return R"({"architectures":["GptOssForCausalLM"],"model_type":"gpt_oss",
      "hidden_size":96,"intermediate_size":32,"num_hidden_layers":4,"num_attention_heads":4,
      "num_key_value_heads":2,"head_dim":32,"vocab_size":512,"num_local_experts":8,
      "num_experts_per_tok":2,"sliding_window":64,"attention_bias":true,"rms_norm_eps":1e-05,
      "layer_types":["sliding_attention","full_attention","sliding_attention","full_attention"],
      "max_position_embeddings":1024,"swiglu_limit":7.0,"tie_word_embeddings":false,
      "rope_scaling":{"beta_fast":32.0,"beta_slow":1.0,"factor":8.0,
        "original_max_position_embeddings":128,"rope_type":"yarn","truncate":false},
      "rope_theta":150000)" +
           extra + "}";
}

}  // namespace

TEST(GptOssFamily, ReadsTheReleasedConfig) {
    const ModelConfig c = parse_hf_config(gptoss_config(), "config.json");
    EXPECT_EQ(c.arch, Arch::GptOss);
    EXPECT_EQ(c.gguf_arch, "gpt-oss");
    EXPECT_EQ(c.rope, RopeStyle::Neox);
    EXPECT_TRUE(c.attn_sinks && c.qkv_bias && c.ffn_norm_is_post_attention_norm);
    EXPECT_TRUE(c.is_moe() && c.moe_renormalize);
    EXPECT_EQ(c.n_experts, 8);
    EXPECT_EQ(c.n_experts_used, 2);
    EXPECT_EQ(c.ffn, 32);
    EXPECT_EQ(c.swiglu_limit, 7.0);
    EXPECT_EQ(c.swiglu_alpha, 1.702);
    EXPECT_EQ(c.rope_theta, 150000.0);
    EXPECT_EQ(c.rope_scaling.kind, RopeScaling::Kind::Yarn);
    EXPECT_EQ(c.rope_scaling.factor, 8.0);
    EXPECT_EQ(c.rope_scaling.original_max_positions, 128);
    EXPECT_FALSE(c.rope_scaling.yarn_truncate);
    EXPECT_DOUBLE_EQ(rope_attention_factor(c), 0.1 * std::log(8.0) + 1.0);
    EXPECT_EQ(c.sliding_window, 64);
    EXPECT_TRUE(c.is_sliding(0) && !c.is_sliding(1) && c.is_sliding(2) && !c.is_sliding(3));
    // Another quantization method is refused by name.
    EXPECT_THROW(
        parse_hf_config(gptoss_config(R"(,"quantization_config":{"quant_method":"gptq"})"), "c"),
        Error);
    EXPECT_NO_THROW(
        parse_hf_config(gptoss_config(R"(,"quantization_config":{"quant_method":"mxfp4"})"), "c"));
}

TEST(GptOssFamily, YarnBlendsFrequenciesBetweenTheCorrectionDims) {
    ModelConfig c = parse_hf_config(gptoss_config(), "config.json");
    // head_dim 32, θ 150000, original 128: the ramp runs from pair
    // 32·ln(128/(32·2π))/(2·ln 150000) < 0 (→ 0) to 32·ln(128/2π)/(2·ln 150000) ≈ 4.05.
    const double high = 32.0 * std::log(128.0 / (2.0 * M_PI)) / (2.0 * std::log(150000.0));
    const std::vector<double> w = yarn_extrapolation_weights(c);
    ASSERT_EQ(w.size(), 16u);
    EXPECT_DOUBLE_EQ(w[0], 1.0);
    EXPECT_NEAR(w[2], 1.0 - 2.0 / high, 1e-12);
    EXPECT_DOUBLE_EQ(w[5], 0.0);
    const std::vector<double> f = rope_frequencies(c, 512);
    for (size_t i = 0; i < f.size(); ++i) {
        const double base = std::pow(150000.0, -2.0 * static_cast<double>(i) / 32.0);
        EXPECT_NEAR(f[i], base * w[i] + base / 8.0 * (1.0 - w[i]), 1e-15) << i;
    }
    // llama.cpp (and transformers' default truncate) ceil the upper end: 5.
    c.rope_scaling.yarn_truncate = true;
    EXPECT_NEAR(yarn_extrapolation_weights(c)[2], 1.0 - 2.0 / 5.0, 1e-12);
}

// transformers 5.17's inv_freq and attention_scaling for the fixture's config
// (scripts/fixtures/logs/make_gptoss_fixtures.log: float32 values printed as doubles).
TEST(GptOssFamily, YarnMatchesTransformers) {
    const ModelConfig c = parse_hf_config(gptoss_config(), "config.json");
    const double transformers[16] = {1.0,
                                     0.3721141517162323,
                                     0.1279282420873642,
                                     0.03759484365582466,
                                     0.006861385423690081,
                                     0.0030156539287418127,
                                     0.0014317783061414957,
                                     0.0006797827081754804,
                                     0.0003227486158721149,
                                     0.00015323524712584913,
                                     7.275334792211652e-05,
                                     3.4541983040980995e-05,
                                     1.6399913874920458e-05,
                                     7.78638514020713e-06,
                                     3.6968358472222462e-06,
                                     1.755191419761104e-06};
    const std::vector<double> f = rope_frequencies(c, 512);
    ASSERT_EQ(f.size(), 16u);
    for (size_t i = 0; i < 16; ++i)  // float32 rounding on their side
        EXPECT_NEAR(f[i], transformers[i], 2e-7 * transformers[i]) << i;
    EXPECT_NEAR(rope_attention_factor(c), 1.2079441541679836, 1e-15);
}

TEST(GptOssFamily, TensorNamesFollowTheConverter) {
    const Family& f = family_of(Arch::GptOss);
    const std::vector<std::pair<std::string, std::string>> renamed = {
        {"model.layers.5.input_layernorm.weight", "blk.5.attn_norm.weight"},
        {"model.layers.5.post_attention_layernorm.weight", "blk.5.post_attention_norm.weight"},
        {"model.layers.5.self_attn.q_proj.bias", "blk.5.attn_q.bias"},
        {"model.layers.5.self_attn.o_proj.weight", "blk.5.attn_output.weight"},
        {"model.layers.5.self_attn.o_proj.bias", "blk.5.attn_output.bias"},
        {"model.layers.5.mlp.router.weight", "blk.5.ffn_gate_inp.weight"},
        {"model.layers.5.mlp.router.bias", "blk.5.ffn_gate_inp.bias"},
        {"model.embed_tokens.weight", "token_embd.weight"},
        {"lm_head.weight", "output.weight"},
    };
    for (const auto& [hf, gguf] : renamed) {
        const auto m = hf_to_gguf(hf, Arch::GptOss);
        ASSERT_TRUE(m) << hf;
        EXPECT_EQ(m->gguf, gguf);
        EXPECT_FALSE(f.derive_hf(hf).has_value()) << hf;
    }
    auto derived = [&](const std::string& hf) {
        std::vector<std::string> out;
        const auto list = f.derive_hf("model.layers.5." + hf);
        EXPECT_TRUE(list.has_value()) << hf;
        if (!list) return out;
        for (const auto& d : *list)
            out.push_back(d.gguf + (d.mxfp4_scales.empty() ? "" : " <- " + d.mxfp4_scales) + " " +
                          std::to_string(d.stride) + "/" + std::to_string(d.offset));
        return out;
    };
    using V = std::vector<std::string>;
    EXPECT_EQ(derived("self_attn.sinks"), V{"blk.5.attn_sinks.weight 0/0"});
    EXPECT_EQ(derived("mlp.experts.gate_up_proj"),
              (V{"blk.5.ffn_gate_exps.weight 2/0", "blk.5.ffn_up_exps.weight 2/1"}));
    EXPECT_EQ(derived("mlp.experts.gate_up_proj_bias"),
              (V{"blk.5.ffn_gate_exps.bias 2/0", "blk.5.ffn_up_exps.bias 2/1"}));
    EXPECT_EQ(derived("mlp.experts.down_proj"), V{"blk.5.ffn_down_exps.weight 1/0"});
    EXPECT_EQ(derived("mlp.experts.down_proj_bias"), V{"blk.5.ffn_down_exps.bias 1/0"});
    const std::string sc = " <- model.layers.5.mlp.experts.";
    EXPECT_EQ(derived("mlp.experts.gate_up_proj_blocks"),
              (V{"blk.5.ffn_gate_exps.weight" + sc + "gate_up_proj_scales 2/0",
                 "blk.5.ffn_up_exps.weight" + sc + "gate_up_proj_scales 2/1"}));
    EXPECT_EQ(derived("mlp.experts.down_proj_blocks"),
              V{"blk.5.ffn_down_exps.weight" + sc + "down_proj_scales 1/0"});
    EXPECT_TRUE(derived("mlp.experts.down_proj_scales").empty());
}

TEST(GptOssFamily, GgufKeysInTheConvertersOrder) {
    const ModelConfig c = parse_hf_config(gptoss_config(), "config.json");
    GgufKeys keys;
    family_of(Arch::GptOss).write_gguf(c, keys);
    std::vector<std::string> names;
    for (const auto& kv : keys) names.push_back(kv.first);
    // TextModel.set_gguf_parameters (yarn branch; head_dim present), then GptOssModel's two.
    const std::vector<std::string> expected = {
        "gpt-oss.block_count",
        "gpt-oss.context_length",
        "gpt-oss.embedding_length",
        "gpt-oss.feed_forward_length",
        "gpt-oss.attention.head_count",
        "gpt-oss.attention.head_count_kv",
        "gpt-oss.rope.scaling.type",
        "gpt-oss.rope.scaling.factor",
        "gpt-oss.rope.scaling.original_context_length",
        "gpt-oss.rope.scaling.yarn_beta_fast",
        "gpt-oss.rope.scaling.yarn_beta_slow",
        "gpt-oss.rope.freq_base",
        "gpt-oss.attention.layer_norm_rms_epsilon",
        "gpt-oss.expert_count",
        "gpt-oss.expert_used_count",
        "gpt-oss.attention.key_length",
        "gpt-oss.attention.value_length",
        "gpt-oss.attention.sliding_window",
        "gpt-oss.expert_feed_forward_length",
    };
    EXPECT_EQ(names, expected);
    EXPECT_EQ(keys[6].second.as_string(), "yarn");
    EXPECT_EQ(keys[8].second.as_int(), 128);
    EXPECT_EQ(keys[17].second.as_int(), 64);
    // llama.cpp fixes the SwiGLU limit and the layer pattern: other values are refused.
    ModelConfig other = c;
    other.swiglu_limit = 5.0;
    GgufKeys k2;
    EXPECT_THROW(family_of(Arch::GptOss).write_gguf(other, k2), Error);
    other = c;
    other.layer_sliding = {false, true, false, true};
    EXPECT_THROW(family_of(Arch::GptOss).write_gguf(other, k2), Error);
}

// OCP MX: E2M1 codes 0..7 = 0, 0.5, 1, 1.5, 2, 3, 4, 6 and 8..15 their negatives; a block's
// value is code × 2^(scale − 127). Released layout: byte j = element 2j | element 2j+1 << 4.
TEST(GptOssFamily, Mxfp4RepackKeepsValuesAndMovesNibbles) {
    const double kE2M1[16] = {0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6};
    // E = 1 expert, 4 rows (gate/up interleaved: 2 each), 2 groups of 32 inputs.
    const int64_t E = 1, R = 4, G = 2;
    std::vector<uint8_t> blocks(E * R * G * 16), scales(E * R * G);
    for (size_t i = 0; i < blocks.size(); ++i) blocks[i] = static_cast<uint8_t>(i * 37 + 11);
    for (size_t i = 0; i < scales.size(); ++i) scales[i] = static_cast<uint8_t>(120 + i);
    StTensor bt{"b", StDtype::U8, {E, R, G, 16}, blocks, "mem"};
    StTensor st{"s", StDtype::U8, {E, R, G}, scales, "mem"};
    for (int offset : {0, 1}) {
        const std::vector<uint8_t> ggml = detail::mxfp4_to_ggml(bt, st, 2, offset);
        ASSERT_EQ(ggml.size(), static_cast<size_t>(E * 2 * G * 17));
        std::vector<float> values(E * 2 * G * 32);
        dequantize(GgmlType::MXFP4, ggml.data(), values.data(), E * 2, G * 32);
        for (int64_t o = 0; o < 2; ++o)
            for (int64_t g = 0; g < G; ++g) {
                const int64_t r = o * 2 + offset, at = r * G + g;
                EXPECT_EQ(ggml[(o * G + g) * 17], scales[at]);  // the E8M0 byte is kept
                for (int64_t j = 0; j < 32; ++j) {
                    const uint8_t byte = blocks[at * 16 + j / 2];
                    const int code = j % 2 == 0 ? byte & 0x0F : byte >> 4;
                    const double want = kE2M1[code] * std::ldexp(1.0, scales[at] - 127);
                    EXPECT_EQ(values[(o * G + g) * 32 + j], static_cast<float>(want))
                        << offset << " " << o << " " << g << " " << j;
                }
            }
    }
}

// ggml's own MXFP4 bytes (golden-quants.gguf, type 39): written out in the released layout
// here (byte j = element 2j | element 2j+1 << 4, scales apart) and repacked by
// mxfp4_to_ggml, they come back byte for byte, and dequantize to ggml's .dq bit for bit.
TEST(GptOssFamily, Mxfp4RepackRoundTripsGgmlGoldenBytes) {
    const GgufFile g = GgufFile::open(test_support::shared_dir() + "/golden/golden-quants.gguf");
    int checked = 0;
    for (const GgufTensorInfo& t : g.tensors()) {
        if (t.type != GgmlType::MXFP4) continue;
        const std::span<const uint8_t> ggml = g.tensor_data(t);
        const int64_t rows = t.n_rows(), G = t.ne[0] / 32;
        std::vector<uint8_t> blocks(static_cast<size_t>(rows * G * 16)), scales(rows * G);
        for (int64_t b = 0; b < rows * G; ++b) {
            const uint8_t* blk = ggml.data() + b * 17;
            uint8_t codes[32];
            for (int j = 0; j < 16; ++j)
                codes[j] = blk[1 + j] & 0x0F, codes[j + 16] = blk[1 + j] >> 4;
            scales[b] = blk[0];
            for (int j = 0; j < 16; ++j)
                blocks[b * 16 + j] = static_cast<uint8_t>(codes[2 * j] | (codes[2 * j + 1] << 4));
        }
        const StTensor bt{"b", StDtype::U8, {1, rows, G, 16}, blocks, "mem"};
        const StTensor st{"s", StDtype::U8, {1, rows, G}, scales, "mem"};
        const std::vector<uint8_t> back = detail::mxfp4_to_ggml(bt, st, 1, 0);
        EXPECT_TRUE(std::equal(back.begin(), back.end(), ggml.begin(), ggml.end())) << t.name;
        std::string dq_name = t.name;
        dq_name.replace(dq_name.size() - 2, 2, ".dq");
        const GgufTensorInfo& dq = g.tensor(dq_name);
        std::vector<float> values(static_cast<size_t>(t.n_elements()));
        dequantize(GgmlType::MXFP4, back.data(), values.data(), rows, t.ne[0]);
        EXPECT_EQ(std::memcmp(values.data(), g.tensor_data(dq).data(), values.size() * 4), 0)
            << dq_name;
        ++checked;
    }
    EXPECT_EQ(checked, 8);
}
