// The Gated DeltaNet hybrids (Qwen3-Next, Qwen3.5 dense and MoE) against transformers and
// llama.cpp's converter. tests/fixtures/qwen3-next, qwen3.5 and qwen3.5-moe hold tiny trained
// checkpoints (BF16: 4 layers, 3 DeltaNet then 1 gated full attention, 2 q/k heads for 4 value
// heads, partial rotary; MoE with shared expert) made by scripts/fixtures/make_deltanet_fixtures.py
// with transformers 5.17 on a GPU machine, with float64 log-probs over two chunks of 512 tokens.
//  - per fixture: mean KLD ≤ 1e-4 against transformers (issue 24), every layer's output
//    against transformers' hidden states (hidden_head.f32), and the chunked
//    recurrence gives the sequential reference twin's logits;
//  - a sweep's prefix-cached ΔKLD equals a full recompute for every item;
//  - the written GGUF has the converter's tensor names, shapes and ARCH.* keys (listed here
//    from convert_hf_to_gguf's Qwen3NextModel / Qwen3_5TextModel and gguf-py MODEL_TENSORS,
//    not from our writer), keeps the conv and the 1-D SSM tensors in F32, and evaluates like
//    its source;
//  - the CUDA engine, vision checkpoints and MTP GGUFs are refused by name.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "analysis/measure/kld.h"
#include "analysis/sweep/sweep.h"
#include "analysis/write/presets.h"
#include "analysis/write/quantize.h"
#include "core/error.h"
#include "core/mmap_file.h"
#include "core/progress.h"
#include "engine/engine.h"
#include "formats/gguf.h"
#include "support/analysis_options.h"
#include "support/family_reference.h"

namespace quantlens {
namespace {

namespace fs = std::filesystem;
using namespace test_support;

// Chunked against sequential delta rule, whole model: both accumulate in double and round
// to float once, so the logits differ by float rounding of the layer outputs at most
// (measured: identical on all three fixtures; tests/engine/test_gated_deltanet.cpp compares
// the kernels themselves on random inputs).
constexpr double kTwinRelTol = 1e-5;
// Prefix-cached against recomputed ΔKLD (issue 24): the same arithmetic on the same inputs.
constexpr double kPrefixCacheAbsTol = 1e-6;
constexpr double kQ80MaxKld = 2e-3;  // Q8_0 on 64-wide rows of a tiny model

const char* const kFixtures[] = {"qwen3-next", "qwen3.5", "qwen3.5-moe"};

bool have(const std::string& fixture) {
    return fs::exists(fixture_dir(fixture) + "/model.safetensors");
}

class DeltaNetReference : public ::testing::TestWithParam<const char*> {};

TEST_P(DeltaNetReference, MatchesTransformers) {
    if (!have(GetParam())) GTEST_SKIP() << "fixture not made: " << GetParam();
    test_support::expect_matches_reference(fixture_dir(GetParam()), GetParam(), GetParam());
}

TEST_P(DeltaNetReference, ChunkedRecurrenceMatchesSequentialTwin) {
    if (!have(GetParam())) GTEST_SKIP() << "fixture not made: " << GetParam();
    const auto model = Model::open(fixture_dir(GetParam()));
    const LogitsFile ref(fixture_dir(GetParam()) + "/reference.qllogp");
    const int64_t T = ref.header().n_ctx;  // one chunk of 512
    const auto tokens = ref.tokens().subspan(0, T);
    EngineOptions seq;
    seq.deltanet_sequential = true;
    const std::vector<float> a = Engine(*model).forward(tokens, 1, T);
    const std::vector<float> b = Engine(*model, seq).forward(tokens, 1, T);
    double max_ref = 0, max_diff = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        max_ref = std::max(max_ref, std::fabs(static_cast<double>(b[i])));
        max_diff = std::max(max_diff, std::fabs(static_cast<double>(a[i]) - b[i]));
    }
    EXPECT_LT(max_diff / max_ref, kTwinRelTol);
    std::printf("%s: chunked vs sequential max relative logit diff %.3g\n", GetParam(),
                max_diff / max_ref);
}

TEST_P(DeltaNetReference, EveryLayerMatchesTransformers) {
    // hidden_head.f32: transformers' residual stream after the embedding and after each layer
    // (output_hidden_states; the last one is the final norm's output) for chunk 0's first 32
    // positions, float32 [5][32][64]. A wrong layer shows here before it reaches the logits.
    if (!have(GetParam())) GTEST_SKIP() << "fixture not made: " << GetParam();
    const std::string dir = fixture_dir(GetParam());
    const auto model = Model::open(dir);
    Engine engine(*model);
    const int64_t C = engine.hidden(), L = engine.n_layers(), P = 32;
    const std::string bytes = test_support::slurp(dir + "/hidden_head.f32");
    ASSERT_EQ(bytes.size(), static_cast<size_t>((L + 1) * P * C * 4));
    std::vector<float> want(static_cast<size_t>((L + 1) * P * C));
    std::memcpy(want.data(), bytes.data(), bytes.size());
    std::vector<std::vector<float>> got(static_cast<size_t>(L + 1));
    engine.set_hook([&](const HookEvent& e) {
        int slot = -1;
        if (e.kind == HookEvent::Kind::Embedding) slot = 0;
        if (e.kind == HookEvent::Kind::LayerOutput && e.layer < L - 1) slot = e.layer + 1;
        if (e.kind == HookEvent::Kind::FinalNorm) slot = static_cast<int>(L);
        if (slot >= 0) got[static_cast<size_t>(slot)].assign(e.data, e.data + P * C);
    });
    const LogitsFile ref(dir + "/reference.qllogp");
    engine.forward(ref.tokens().subspan(0, ref.header().n_ctx), 1, ref.header().n_ctx);
    double worst = 0;
    for (int64_t s = 0; s <= L; ++s) {
        double max_ref = 0, max_diff = 0;
        for (int64_t i = 0; i < P * C; ++i) {
            const double w = want[static_cast<size_t>(s * P * C + i)];
            max_ref = std::max(max_ref, std::fabs(w));
            max_diff = std::max(max_diff, std::fabs(got[static_cast<size_t>(s)][i] - w));
        }
        // BF16 weights in float32 against float64: relative errors of ~1e-6.
        EXPECT_LT(max_diff / max_ref, 1e-4) << "hidden state " << s;
        worst = std::max(worst, max_diff / max_ref);
    }
    std::printf("%s: worst relative hidden-state difference %.3g\n", GetParam(), worst);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, DeltaNetReference, ::testing::ValuesIn(kFixtures),
                         [](const auto& info) { return fixture_test_name(info.param); });

TEST(DeltaNetSweep, PrefixCacheEqualsFullRecomputeForEveryItem) {
    if (!have("qwen3-next")) GTEST_SKIP() << "fixture not made";
    Progress::set_enabled(false);
    auto options = [](bool prefix) {
        SweepOptions o = eval_sweep(fixture_dir("qwen3-next"), 256, 128, {GgmlType::Q4_0});
        o.prefix_cache = prefix;
        return o;
    };
    SweepMeasurer cached(options(true)), full(options(false));
    cached.prepare();
    full.prepare();
    const auto model = Model::open(fixture_dir("qwen3-next"));
    int items = 0;
    for (const SweepUnit& u : build_sweep_units(*model, "tensor")) {
        const double a = cached.measure(u.name, "Q4_0").at("kld_mean");
        const double b = full.measure(u.name, "Q4_0").at("kld_mean");
        EXPECT_NEAR(a, b, kPrefixCacheAbsTol) << u.name;
        // Rows Q4_0's 32-blocks divide change the model; the shared expert's 48-wide
        // ffn_down_shexp falls back to F16, which F16-rounded weights already are.
        if (model->get(u.tensors.front()).n_per_row() % 32 == 0) EXPECT_GT(b, 0.0) << u.name;
        ++items;
    }
    // Every quantizable tensor of 4 layers: 3 DeltaNet layers (attn_qkv, attn_gate, ssm_ba,
    // ssm_out), 1 attention layer (q, k, v, output), 4 MoE blocks (3 expert tensors and 3
    // shared-expert ones), the embedding and the head.
    EXPECT_EQ(items, 3 * 4 + 4 + 4 * 6 + 2);
}

// ---- GGUF ----

std::vector<std::string> layer_names(int64_t l, const std::vector<std::string>& bases) {
    std::vector<std::string> out;
    for (const auto& b : bases) out.push_back("blk." + std::to_string(l) + "." + b);
    return out;
}

// gguf-py MODEL_TENSORS[QWEN3NEXT] / [QWEN35] / [QWEN35MOE] as the converter maps these
// checkpoints: in_proj_qkvz split into attn_qkv + attn_gate, in_proj_ba kept (ssm_ba),
// Qwen3.5's in_proj_b/a as ssm_beta/ssm_alpha, dt_bias as ssm_dt.bias, A_log as ssm_a,
// post_attention_layernorm as post_attention_norm.
std::vector<std::string> expected_tensors(const std::string& fixture) {
    const bool next = fixture == "qwen3-next", moe = fixture != "qwen3.5";
    std::vector<std::string> out = {"token_embd.weight", "output_norm.weight", "output.weight"};
    for (int64_t l = 0; l < 4; ++l) {
        std::vector<std::string> bases = {"attn_norm.weight", "post_attention_norm.weight"};
        if (l < 3) {
            for (const char* b : {"attn_qkv.weight", "attn_gate.weight", "ssm_conv1d.weight",
                                  "ssm_dt.bias", "ssm_a", "ssm_norm.weight", "ssm_out.weight"})
                bases.push_back(b);
            if (next) {
                bases.push_back("ssm_ba.weight");
            } else {
                bases.push_back("ssm_beta.weight");
                bases.push_back("ssm_alpha.weight");
            }
        } else {
            for (const char* b : {"attn_q.weight", "attn_k.weight", "attn_v.weight",
                                  "attn_output.weight", "attn_q_norm.weight", "attn_k_norm.weight"})
                bases.push_back(b);
        }
        if (moe) {
            for (const char* b :
                 {"ffn_gate_inp.weight", "ffn_gate_exps.weight", "ffn_up_exps.weight",
                  "ffn_down_exps.weight", "ffn_gate_inp_shexp.weight", "ffn_gate_shexp.weight",
                  "ffn_up_shexp.weight", "ffn_down_shexp.weight"})
                bases.push_back(b);
        } else {
            for (const char* b : {"ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"})
                bases.push_back(b);
        }
        for (const auto& n : layer_names(l, bases)) out.push_back(n);
    }
    std::sort(out.begin(), out.end());
    return out;
}

// TextModel.set_gguf_parameters (intermediate_size when the config has it, mrope_section as
// rope.dimension_sections, expert counts, head_dim), Qwen2MoeModel's expert widths, then
// Qwen3NextModel's ssm.* keys, full_attention_interval and rope.dimension_count.
std::vector<std::string> expected_keys(const std::string& fixture) {
    const bool next = fixture == "qwen3-next", moe = fixture != "qwen3.5";
    std::vector<std::string> k = {"block_count", "context_length", "embedding_length"};
    if (fixture != "qwen3.5-moe") k.push_back("feed_forward_length");
    for (const char* s : {"attention.head_count", "attention.head_count_kv"}) k.push_back(s);
    if (!next) k.push_back("rope.dimension_sections");
    for (const char* s : {"rope.freq_base", "attention.layer_norm_rms_epsilon"}) k.push_back(s);
    if (moe)
        for (const char* s : {"expert_count", "expert_used_count"}) k.push_back(s);
    for (const char* s : {"attention.key_length", "attention.value_length"}) k.push_back(s);
    if (moe)
        for (const char* s : {"expert_feed_forward_length", "expert_shared_feed_forward_length"})
            k.push_back(s);
    for (const char* s :
         {"ssm.conv_kernel", "ssm.state_size", "ssm.group_count", "ssm.time_step_rank",
          "ssm.inner_size", "full_attention_interval", "rope.dimension_count"})
        k.push_back(s);
    return k;
}

// A copy of the fixture with a plain byte-level tokenizer of the same vocabulary size (the
// GGUF vocabulary is not what this test is about).
std::string prepared_copy(const std::string& fixture) {
    return test_support::edited_copy(
        "deltanet-" + fixture, fixture, [](auto&) {}, true);
}

class DeltaNetGguf : public ::testing::TestWithParam<const char*> {};

TEST_P(DeltaNetGguf, NamesShapesKeysAndEvaluation) {
    const std::string fixture = GetParam();
    if (!have(fixture)) GTEST_SKIP() << "fixture not made: " << fixture;
    const std::string dir = prepared_copy(fixture);
    const auto hf = Model::open(dir);
    const ModelConfig& c = hf->config();
    const std::string arch = c.gguf_arch;
    EXPECT_EQ(arch, fixture == "qwen3-next" ? "qwen3next"
                    : fixture == "qwen3.5"  ? "qwen35"
                                            : "qwen35moe");
    const GgufFile g = GgufFile::open(write_gguf(*hf, "F16", dir + "/m-f16.gguf"));

    std::vector<std::string> names;
    for (const auto& t : g.tensors()) names.push_back(t.name);
    std::sort(names.begin(), names.end());
    EXPECT_EQ(names, expected_tensors(fixture));

    std::vector<std::string> keys;
    for (const auto& [k, v] : g.kv())
        if (k.rfind(arch + ".", 0) == 0) keys.push_back(k.substr(arch.size() + 1));
    EXPECT_EQ(keys, expected_keys(fixture));
    // The fixture: hidden 64, 4 heads of 32 (2 kv), linear heads 2 (q/k) and 4 (v) of 16,
    // conv 4, partial rotary 0.25, 8 experts of 32 with a shared one of 48.
    EXPECT_EQ(g.get(arch + ".ssm.conv_kernel").as_int(), 4);
    EXPECT_EQ(g.get(arch + ".ssm.state_size").as_int(), 16);
    EXPECT_EQ(g.get(arch + ".ssm.group_count").as_int(), 2);
    EXPECT_EQ(g.get(arch + ".ssm.time_step_rank").as_int(), 4);
    EXPECT_EQ(g.get(arch + ".ssm.inner_size").as_int(), 64);
    EXPECT_EQ(g.get(arch + ".full_attention_interval").as_int(), 4);
    EXPECT_EQ(g.get(arch + ".rope.dimension_count").as_int(), 8);
    if (fixture != "qwen3-next")
        EXPECT_EQ(g.get(arch + ".rope.dimension_sections").as_int_array(),
                  (std::vector<int64_t>{2, 1, 1, 0}));

    // Shapes in ggml order (llama.cpp's loader's create_tensor shapes).
    auto ne = [&](const std::string& n) { return g.tensor(n).ne; };
    using V = std::vector<int64_t>;
    EXPECT_EQ(ne("blk.0.attn_qkv.weight"), (V{64, 2 * 2 * 16 + 4 * 16}));
    EXPECT_EQ(ne("blk.0.attn_gate.weight"), (V{64, 64}));
    EXPECT_EQ(ne("blk.0.ssm_conv1d.weight"), (V{4, 128}));
    EXPECT_EQ(ne("blk.0.ssm_a"), (V{4}));
    EXPECT_EQ(ne("blk.0.ssm_dt.bias"), (V{4}));
    EXPECT_EQ(ne("blk.0.ssm_norm.weight"), (V{16}));
    EXPECT_EQ(ne("blk.0.ssm_out.weight"), (V{64, 64}));
    EXPECT_EQ(ne("blk.3.attn_q.weight"), (V{64, 2 * 4 * 32}));  // query and gate per head
    if (fixture == "qwen3-next")
        EXPECT_EQ(ne("blk.0.ssm_ba.weight"), (V{64, 8}));
    else
        EXPECT_EQ(ne("blk.0.ssm_beta.weight"), (V{64, 4}));
    // Fixed tensors: llama-quantize keeps the conv and the 1-D tensors as the converter
    // stored them (F32); they are not sweep units.
    for (const char* n :
         {"blk.0.ssm_conv1d.weight", "blk.0.ssm_a", "blk.0.ssm_dt.bias", "blk.0.ssm_norm.weight"})
        EXPECT_EQ(g.tensor(n).type, GgmlType::F32) << n;
    for (const auto& t : hf->tensors())
        if (t.role == TensorRole::SsmConv || t.role == TensorRole::SsmA)
            EXPECT_FALSE(t.quantizable);

    const auto back = Model::open(dir + "/m-f16.gguf");
    EXPECT_EQ(back->config().ssm_v_tiled, c.ssm_v_tiled);
    EXPECT_EQ(back->config().layer_linear, c.layer_linear);
    const double kld_f16 = mean_kld(*hf, *back, fixture_dir(fixture));
    EXPECT_LE(kld_f16, kF16MaxKld);
    const std::string q8 = write_gguf(*hf, "Q8_0", dir + "/m-q8.gguf");
    EXPECT_EQ(GgufFile::open(q8).tensor("blk.0.ssm_conv1d.weight").type, GgmlType::F32);
    EXPECT_EQ(GgufFile::open(q8).tensor("blk.0.ssm_out.weight").type, GgmlType::Q8_0);
    const double kld_q8 = mean_kld(*hf, *Model::open(q8), fixture_dir(fixture));
    EXPECT_LE(kld_q8, kQ80MaxKld);
    std::printf("%s: KLD(HF || F16 GGUF) %.3g, KLD(HF || Q8_0 GGUF) %.3g\n", fixture.c_str(),
                kld_f16, kld_q8);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, DeltaNetGguf, ::testing::ValuesIn(kFixtures),
                         [](const auto& info) { return fixture_test_name(info.param); });

TEST(DeltaNetRefusals, ByName) {
    if (!have("qwen3.5")) GTEST_SKIP() << "fixture not made";
    const auto model = Model::open(fixture_dir("qwen3.5"));
    // Both engines implement the layer (the CUDA engine since issue 24's GPU half).
    EXPECT_NO_THROW(check_layer_supported(model->config(), "m", EngineKind::Cuda));
    // A GGUF with MTP (NextN) layers, as the converter writes Qwen3.5 without --no-mtp.
    const std::string gdir = prepared_copy("qwen3.5");
    const GgufFile plain = GgufFile::open(write_gguf(*Model::open(gdir), "F16", gdir + "/m.gguf"));
    GgufWriter w;
    w.copy_from(plain);
    w.add_kv("qwen35.nextn_predict_layers", GgufValue::u32(1));
    w.write(gdir + "/mtp.gguf");
    try {
        Model::open(gdir + "/mtp.gguf");
        ADD_FAILURE() << "a GGUF with NextN layers was accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("nextn_predict_layers"), std::string::npos)
            << e.what();
    }
    // Layer kinds llama.cpp's loader would not derive from full_attention_interval.
    auto moved = nlohmann::json::parse(read_text_file(fixture_dir("qwen3.5") + "/config.json"));
    moved["layer_types"] = {"full_attention", "linear_attention", "linear_attention",
                            "linear_attention"};
    const std::string mdir = test_support::fresh_dir("deltanet-layer-types");
    std::ofstream(mdir + "/config.json") << moved.dump();
    try {
        load_hf_config(mdir + "/config.json");
        ADD_FAILURE() << "layer types off the full_attention_interval pattern were accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("full_attention_interval"), std::string::npos)
            << e.what();
    }
    // The vision-language checkpoint is not a registered architecture.
    const std::string dir = test_support::fresh_dir("deltanet-vision");
    auto config = nlohmann::json::parse(read_text_file(fixture_dir("qwen3.5") + "/config.json"));
    config["architectures"] = {"Qwen3_5ForConditionalGeneration"};
    std::ofstream(dir + "/config.json") << config.dump();
    try {
        load_hf_config(dir + "/config.json");
        ADD_FAILURE() << "a Qwen3.5 vision checkpoint was accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("Qwen3_5ForConditionalGeneration"), std::string::npos);
    }
}

}  // namespace
}  // namespace quantlens
