// GGUF files of the Gemma 2, Gemma 3 and Phi-3 fixtures as llama.cpp's converter writes them:
// tensor names and ARCH.* keys in order, listed here from convert_hf_to_gguf (conversion/
// gemma.py, phi.py, base.py TextModel.set_gguf_parameters) and gguf-py's MODEL_TENSORS, not
// from our writer; values of the family keys and of Phi-3's longrope tensors; and the written
// F16 / Q8_0 file, read back, evaluating like its Hugging Face source.
//
// Gemma configs are edited where llama.cpp's loader derives instead of reading: its score
// scale is 1/sqrt(head_dim) (query_pre_attn_scalar = head_dim here) and Gemma 3's sliding
// layers are five in six (all four layers here); the writer refuses the fixtures as they are
// (tested below). The tokenizer is replaced by a plain byte-level one, so the test does not
// depend on SentencePiece-style GGUF vocabularies.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "analysis/measure/kld.h"
#include "analysis/write/presets.h"
#include "analysis/write/quantize.h"
#include "core/error.h"
#include "core/mmap_file.h"
#include "engine/engine.h"
#include "formats/gguf.h"
#include "support/family_reference.h"

namespace quantlens {
namespace {

using namespace test_support;
namespace fs = std::filesystem;

// kF16MaxKld (support/family_reference.h): the GGUF differs from its source only by
// denormals and F16 rounding of norms' 1 + w (stored F32, so none).
// Q8_0's 8-bit blocks on 96-wide rows of a tiny model.
constexpr double kQ80MaxKld = 2e-3;

std::vector<std::string> layer_names(int64_t n_layers, const std::vector<std::string>& bases) {
    std::vector<std::string> out;
    for (int64_t l = 0; l < n_layers; ++l)
        for (const auto& b : bases) out.push_back("blk." + std::to_string(l) + "." + b + ".weight");
    return out;
}

struct ArchExpectation {
    const char* fixture;
    std::function<void(nlohmann::json&)> edit;
    const char* arch;
    std::vector<std::string> keys;     // ARCH.* keys, in the converter's order, without ARCH.
    std::vector<std::string> tensors;  // every tensor name
    bool early_key;                    // a key right after general.architecture (Phi-3)
};

// gguf-py MODEL_TENSORS[GEMMA2] / [GEMMA3] / [PHI3] as the converter maps these checkpoints
// (Gemma's lm_head is dropped: tied; Phi-3's longrope adds the two factor tensors).
std::vector<ArchExpectation> expectations() {
    std::vector<std::string> gemma2 = {"token_embd.weight", "output_norm.weight"};
    for (const auto& n : layer_names(
             4, {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "post_attention_norm",
                 "ffn_norm", "ffn_gate", "ffn_up", "ffn_down", "post_ffw_norm"}))
        gemma2.push_back(n);
    std::vector<std::string> gemma3 = {"token_embd.weight", "output_norm.weight"};
    for (const auto& n :
         layer_names(4, {"attn_norm", "attn_q", "attn_q_norm", "attn_k", "attn_k_norm", "attn_v",
                         "attn_output", "post_attention_norm", "ffn_norm", "ffn_gate", "ffn_up",
                         "ffn_down", "post_ffw_norm"}))
        gemma3.push_back(n);
    std::vector<std::string> phi3 = {"token_embd.weight", "output_norm.weight", "output.weight",
                                     "rope_factors_long.weight", "rope_factors_short.weight"};
    for (const auto& n :
         layer_names(2, {"attn_norm", "attn_qkv", "attn_output", "ffn_norm", "ffn_up", "ffn_down"}))
        phi3.push_back(n);
    return {
        {"gemma2",
         [](auto& c) { c["query_pre_attn_scalar"] = 32; },
         "gemma2",
         // Gemma2Model.set_gguf_parameters
         {"context_length", "embedding_length", "block_count", "feed_forward_length",
          "attention.head_count", "attention.head_count_kv", "attention.layer_norm_rms_epsilon",
          "attention.key_length", "attention.value_length", "attn_logit_softcapping",
          "final_logit_softcapping", "attention.sliding_window"},
         gemma2,
         false},
        {"gemma3",
         [](auto& c) {
             c["query_pre_attn_scalar"] = 32;
             c["layer_types"] = std::vector<std::string>(4, "sliding_attention");
         },
         "gemma3",
         // TextModel.set_gguf_parameters (linear rope of full_attention, freq_base_swa of
         // sliding_attention), then Gemma3Model's own keys (rewritten ones keep their place)
         {"block_count", "context_length", "embedding_length", "feed_forward_length",
          "attention.head_count", "attention.head_count_kv", "rope.scaling.type",
          "rope.scaling.factor", "rope.freq_base", "rope.freq_base_swa",
          "attention.layer_norm_rms_epsilon", "attention.key_length", "attention.value_length",
          "attention.sliding_window"},
         gemma3,
         false},
        {"phi3-longrope",
         [](auto&) {},
         "phi3",
         // Phi3MiniModel.set_gguf_parameters; rope.scaling.attn_factor comes from
         // generate_extra_tensors, which runs before the general keys are written
         {"rope.scaling.attn_factor", "context_length", "rope.scaling.original_context_length",
          "embedding_length", "feed_forward_length", "block_count", "attention.head_count",
          "attention.head_count_kv", "attention.layer_norm_rms_epsilon", "rope.dimension_count",
          "rope.freq_base", "attention.sliding_window"},
         phi3,
         true},
    };
}

// A copy of the fixture with `edit` applied to config.json and a plain byte-level BPE
// tokenizer of the same vocabulary size.
std::string prepared_copy(const ArchExpectation& e) {
    return test_support::edited_copy(std::string("famgguf-") + e.arch, e.fixture, e.edit, true);
}

TEST(FamilyGguf, NamesKeysAndEvaluation) {
    for (const ArchExpectation& e : expectations()) {
        SCOPED_TRACE(e.arch);
        const std::string dir = prepared_copy(e);
        const auto hf = Model::open(dir);
        const std::string f16 = write_gguf(*hf, "F16", dir + "/m-f16.gguf");
        const GgufFile g = GgufFile::open(f16);

        std::vector<std::string> names;
        for (const auto& t : g.tensors()) names.push_back(t.name);
        std::sort(names.begin(), names.end());
        std::vector<std::string> expected = e.tensors;
        std::sort(expected.begin(), expected.end());
        EXPECT_EQ(names, expected);

        const std::string prefix = std::string(e.arch) + ".";
        EXPECT_EQ(test_support::arch_keys(g, e.arch), e.keys);
        ASSERT_GE(g.kv().size(), 2u);
        EXPECT_EQ(g.kv()[0].first, "general.architecture");
        EXPECT_EQ(g.kv()[0].second.as_string(), e.arch);
        EXPECT_EQ(g.kv()[1].first, e.early_key ? prefix + e.keys.front() : "general.type");

        const auto gguf = Model::open(f16);
        const double kld_f16 = mean_kld(*hf, *gguf, fixture_dir(e.fixture));
        EXPECT_LE(kld_f16, kF16MaxKld);
        const auto q8 = Model::open(write_gguf(*hf, "Q8_0", dir + "/m-q8.gguf"));
        const double kld_q8 = mean_kld(*hf, *q8, fixture_dir(e.fixture));
        EXPECT_LE(kld_q8, kQ80MaxKld);
        std::printf("%s: KLD(HF || F16 GGUF) %.3g, KLD(HF || Q8_0 GGUF) %.3g\n", e.arch, kld_f16,
                    kld_q8);
    }
}

TEST(FamilyGguf, KeyValues) {
    const auto all = expectations();
    {
        const std::string dir = prepared_copy(all[0]);
        const GgufFile g = GgufFile::open(write_gguf(*Model::open(dir), "F16", dir + "/m.gguf"));
        EXPECT_FLOAT_EQ(g.get("gemma2.attn_logit_softcapping").as_float(), 3.0f);
        EXPECT_FLOAT_EQ(g.get("gemma2.final_logit_softcapping").as_float(), 8.0f);
        EXPECT_EQ(g.get("gemma2.attention.sliding_window").as_int(), 64);
        // The converter stores Gemma's norms as 1 + w; the model reads them back unshifted.
        const auto back = Model::open(dir + "/m.gguf");
        EXPECT_EQ(back->config().hf_norm_offset, 0.0);
        EXPECT_EQ(back->config().act, Activation::GeluTanh);
        EXPECT_TRUE(back->config().is_sliding(0) && !back->config().is_sliding(1));
    }
    {
        const std::string dir = prepared_copy(all[1]);
        const GgufFile g = GgufFile::open(write_gguf(*Model::open(dir), "F16", dir + "/m.gguf"));
        EXPECT_EQ(g.get("gemma3.rope.scaling.type").as_string(), "linear");
        EXPECT_FLOAT_EQ(g.get("gemma3.rope.scaling.factor").as_float(), 8.0f);
        EXPECT_FLOAT_EQ(g.get("gemma3.rope.freq_base").as_float(), 1e6f);
        EXPECT_FLOAT_EQ(g.get("gemma3.rope.freq_base_swa").as_float(), 1e4f);
    }
    {
        const std::string dir = prepared_copy(all[2]);
        const GgufFile g = GgufFile::open(write_gguf(*Model::open(dir), "F16", dir + "/m.gguf"));
        EXPECT_EQ(g.get("phi3.rope.dimension_count").as_int(), 18);
        EXPECT_EQ(g.get("phi3.rope.scaling.original_context_length").as_int(), 64);
        EXPECT_EQ(g.get("phi3.attention.sliding_window").as_int(), 0);
        EXPECT_FLOAT_EQ(g.get("phi3.rope.scaling.attn_factor").as_float(),
                        static_cast<float>(std::sqrt(1.0 + std::log(16.0) / std::log(64.0))));
        const auto& lf = g.tensor("rope_factors_long.weight");
        const auto& sf = g.tensor("rope_factors_short.weight");
        EXPECT_EQ(lf.type, GgmlType::F32);
        ASSERT_EQ(lf.n_elements(), 9);
        ASSERT_EQ(sf.n_elements(), 9);
        std::vector<float> l(9), s(9);
        std::memcpy(l.data(), g.tensor_data(lf).data(), 36);
        std::memcpy(s.data(), g.tensor_data(sf).data(), 36);
        for (int i = 0; i < 9; ++i) {
            EXPECT_FLOAT_EQ(l[i], static_cast<float>(1.0 + 0.9 * i)) << i;
            EXPECT_FLOAT_EQ(s[i], static_cast<float>(1.0 + 0.05 * i)) << i;
        }
        // The fused projections stay fused, as llama.cpp's converter keeps them.
        EXPECT_EQ(g.tensor("blk.0.attn_qkv.weight").ne, (std::vector<int64_t>{96, 192}));
        EXPECT_EQ(g.tensor("blk.0.ffn_up.weight").ne, (std::vector<int64_t>{96, 384}));
    }
}

TEST(FamilyGguf, RefusesWhatLlamaCppWouldComputeDifferently) {
    auto message = [](const ArchExpectation& e) {
        const std::string dir = prepared_copy(e);
        try {
            write_gguf(*Model::open(dir), "F16", dir + "/m.gguf");
        } catch (const Error& err) {
            EXPECT_FALSE(fs::exists(dir + "/m.gguf"));
            return std::string(err.what());
        }
        return std::string();
    };
    ArchExpectation e = expectations()[0];
    e.edit = [](auto&) {};  // query_pre_attn_scalar 24 with head_dim 32
    EXPECT_NE(message(e).find("query_pre_attn_scalar"), std::string::npos);
    e = expectations()[1];
    e.edit = [](auto& c) { c["query_pre_attn_scalar"] = 32; };  // layer types s, f, s, f
    EXPECT_NE(message(e).find("layer_types[1]"), std::string::npos);
    e = expectations()[1];
    e.edit = [](auto& c) {  // llama.cpp fixes the sliding layers' θ at 10000
        c["query_pre_attn_scalar"] = 32;
        c["layer_types"] = std::vector<std::string>(4, "sliding_attention");
        c["rope_parameters"]["sliding_attention"]["rope_theta"] = 50000.0;
    };
    EXPECT_NE(message(e).find("rope_theta is 50000"), std::string::npos);
    e = expectations()[0];
    e.edit = [](auto& c) {  // gemma2 GGUFs carry no rope keys
        c["query_pre_attn_scalar"] = 32;
        c["rope_parameters"]["rope_theta"] = 20000.0;
    };
    EXPECT_NE(message(e).find("rope_theta 20000"), std::string::npos);
}

}  // namespace
}  // namespace quantlens
