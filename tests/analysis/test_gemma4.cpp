// Gemma 4 text (Gemma4ForCausalLM) against transformers: tests/fixtures/gemma4 (dense: 6
// layers [S S F S S F], per-layer head sizes and KV heads, K=V global layers, proportional
// rope, per-layer embeddings, the last 2 layers KV-shared with double-wide MLPs, layer
// scalars ≠ 1, final soft-capping) and tests/fixtures/gemma4-moe (26B-A4B style: the MoE block
// beside the dense MLP), made by scripts/fixtures/make_gemma4_fixtures.py with transformers
// 5.17 on a GPU machine (float64 log-probs of eager attention over two chunks of 512 tokens).
//
// Also: the kernels' reference twins; the sweep's prefix cache (a resumed layer reads the
// per-layer inputs and shared K/V kept in the state rows) equals a full recompute item for
// item; the GGUF tensor names, shapes and gemma4.* keys as llama.cpp's converter writes them
// (conversion/gemma.py Gemma4Model over Gemma3Model and TextModel; gguf-py MODEL_TENSORS),
// read back and evaluated; refusals by name.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "analysis/measure/kld.h"
#include "analysis/sweep/sweep.h"
#include "analysis/write/presets.h"
#include "analysis/write/quantize.h"
#include "core/error.h"
#include "core/mmap_file.h"
#include "engine/layers/gemma4_layer.h"
#include "formats/gguf.h"
#include "support/analysis_options.h"
#include "support/family_reference.h"

namespace quantlens {
namespace {

namespace fs = std::filesystem;
using namespace test_support;

constexpr double kMaxAbsLogitDiff = test_support::kFamilyMaxAbsLogitDiff;
constexpr double kPrefixCacheTolerance = 1e-6;  // issue 24: cached ΔKLD = full recompute
// Q8_0's 8-bit blocks on 96-wide rows of a tiny model (as tests/analysis/test_family_gguf.cpp).
constexpr double kQ80MaxKld = 2e-3;

test_support::ReferenceComparison run(const std::string& dir, const std::string& fixture) {
    const auto model = Model::open(dir);
    return compare_with_reference(*model, fixture_dir(fixture));
}

// A copy of a fixture whose config.json is edited by `edit`.
std::string edited_copy(const std::string& fixture,
                        const std::function<void(nlohmann::json&)>& edit) {
    return test_support::edited_copy("gemma4-" + fixture, fixture, edit);
}

TEST(Gemma4Reference, DenseMatchesTransformers) {
    test_support::expect_matches_reference(fixture_dir("gemma4"), "gemma4", "gemma4");
}

TEST(Gemma4Reference, MoeMatchesTransformers) {
    test_support::expect_matches_reference(fixture_dir("gemma4-moe"), "gemma4-moe", "gemma4-moe");
}

// Each edit changes one feature the reference depends on; the result must be far off.
TEST(Gemma4Reference, EveryFeatureMatters) {
    const std::vector<std::pair<const char*, std::function<void(nlohmann::json&)>>> cases = {
        {"no final soft-capping", [](auto& c) { c["final_logit_softcapping"] = nullptr; }},
        {"no sliding window", [](auto& c) { c["sliding_window"] = 4096; }},
        {"full rotary on global layers",
         [](auto& c) { c["rope_parameters"]["full_attention"]["partial_rotary_factor"] = 1.0; }},
        {"the global θ for sliding layers",
         [](auto& c) { c["rope_parameters"]["sliding_attention"]["rope_theta"] = 1e6; }},
    };
    for (const auto& [what, edit] : cases) {
        const double kld = run(edited_copy("gemma4", edit), "gemma4").kld_mean;
        EXPECT_GT(kld, kFeatureMattersKld) << what;
        std::printf("gemma4 with %s: mean KLD %.3g\n", what, kld);
    }
}

TEST(Gemma4Kernels, ProportionalRopeRotatesTheFirstPairsOfTheWholeHead) {
    // transformers' _compute_proportional_rope_parameters: int(0.25 · 64 // 2) = 8 pairs at
    // θ^(-2i/64) (exponent over the whole head), 24 pairs with frequency 0.
    const auto f = proportional_rope_frequencies(1e6, 64, 0.25);
    ASSERT_EQ(f.size(), 32u);
    for (int i = 0; i < 32; ++i)
        EXPECT_DOUBLE_EQ(f[static_cast<size_t>(i)], i < 8 ? std::pow(1e6, -2.0 * i / 64) : 0.0)
            << i;
    const auto d = default_rope_frequencies(1e4, 32);
    ASSERT_EQ(d.size(), 16u);
    EXPECT_DOUBLE_EQ(d[15], std::pow(1e4, -30.0 / 32));
}

TEST(Gemma4Kernels, PleInputsMatchTheReferenceTwin) {
    const int64_t N = 5, C = 24, L = 3, P = 8;
    std::vector<float> emb(N * C), tok(N * L * P), proj(L * P * C), norm(P), fast(N * L * P),
        ref(N * L * P);
    uint32_t s = 7;
    auto rnd = [&] {
        s = s * 1664525u + 1013904223u;
        return static_cast<float>(s >> 8) / static_cast<float>(1u << 24) - 0.5f;
    };
    for (auto* v : {&emb, &tok, &proj, &norm})
        for (float& x : *v) x = rnd();
    ple_inputs_forward(fast.data(), emb.data(), tok.data(), proj.data(), norm.data(), N, C, L, P,
                       1e-6f);
    ple_inputs_ref(ref.data(), emb.data(), tok.data(), proj.data(), norm.data(), N, C, L, P, 1e-6f);
    for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(fast[i], ref[i], 1e-5) << i;
}

// The engine (BLAS matmuls, state rows, shared K/V copied through the rows) against the plain
// double-loop twin, over 80 tokens: past the sliding window of 64, through the KV-shared
// layers, the PLE branch and the MoE block.
TEST(Gemma4Kernels, EngineMatchesTheScalarTwin) {
    for (const char* fixture : {"gemma4", "gemma4-moe"}) {
        SCOPED_TRACE(fixture);
        const auto model = Model::open(fixture_dir(fixture));
        const LogitsFile ref(fixture_dir("gemma4") + "/reference.qllogp");
        const int64_t T = 80, V = model->config().vocab;
        const auto tokens = ref.tokens().subspan(0, T);
        const std::vector<float> fast = Engine(*model).forward(tokens, 1, T);
        const std::vector<double> twin = gemma4_forward_ref(*model, tokens);
        double worst = 0;
        for (int64_t i = 0; i < T * V; ++i)
            worst = std::max(
                worst, std::fabs(fast[static_cast<size_t>(i)] - twin[static_cast<size_t>(i)]));
        EXPECT_LE(worst, kMaxAbsLogitDiff);
        std::printf("%s: engine vs scalar twin, max |dlogit| %.3g over %lld tokens\n", fixture,
                    worst, static_cast<long long>(T));
    }
}

TEST(Gemma4Kernels, RoutingRenormalizesTheTopKThenScales) {
    const float logits[4] = {0.0f, 2.0f, 1.0f, -1.0f};
    const float scale[4] = {1.0f, 0.5f, 2.0f, 1.0f};
    const auto r = gemma4_route(logits, scale, 4, 2);
    ASSERT_EQ(r.size(), 2u);
    const double p1 = std::exp(2.0), p2 = std::exp(1.0);
    EXPECT_EQ(r[0].first, 1);
    EXPECT_NEAR(r[0].second, p1 / (p1 + p2) * 0.5, 1e-6);
    EXPECT_EQ(r[1].first, 2);
    EXPECT_NEAR(r[1].second, p2 / (p1 + p2) * 2.0, 1e-6);
}

// The state rows carry what a resumed layer reads besides h, so the prefix-cached sweep
// gives the same ΔKLD as recomputing every item from the embedding.
TEST(Gemma4Sweep, PrefixCacheEqualsFullRecompute) {
    for (const char* fixture : {"gemma4", "gemma4-moe"}) {
        SCOPED_TRACE(fixture);
        SweepOptions o = eval_sweep(fixture_dir(fixture), 256, 128, {GgmlType::Q4_K});
        o.uniform = false;
        SweepOptions full = o;
        full.prefix_cache = false;
        SweepMeasurer cached(o), recomputed(full);
        cached.prepare();
        recomputed.prepare();
        const std::vector<std::string> units =
            std::string(fixture) == "gemma4"
                ? std::vector<std::string>{"per_layer_token_embd.weight", "blk.2.attn_k.weight",
                                           "blk.3.attn_v.weight",         "blk.4.attn_q.weight",
                                           "blk.5.ffn_down.weight",       "blk.1.inp_gate.weight",
                                           "blk.5.attn_output.weight"}
                : std::vector<std::string>{"blk.1.attn_k.weight", "blk.2.ffn_gate_up_exps.weight",
                                           "blk.3.attn_output.weight", "blk.3.ffn_up.weight"};
        for (const std::string& unit : units) {
            const auto a = cached.measure(unit, "Q4_K");
            const auto b = recomputed.measure(unit, "Q4_K");
            EXPECT_GT(a.at("kld_mean"), 0.0) << unit;
            EXPECT_NEAR(a.at("kld_mean"), b.at("kld_mean"), kPrefixCacheTolerance) << unit;
            EXPECT_NEAR(a.at("ln_ppl_ratio"), b.at("ln_ppl_ratio"), kPrefixCacheTolerance) << unit;
            std::printf("%s %s: KLD cached %.9g, recomputed %.9g\n", fixture, unit.c_str(),
                        a.at("kld_mean"), b.at("kld_mean"));
        }
    }
}

// The written GGUF read back as llama.cpp's loader reads it (per-layer arrays, sliding
// pattern, shared layers, rope_freqs, V = K where attn_v is absent) evaluates like its source.
TEST(Gemma4Gguf, ReadsBackAndEvaluatesLikeTheSource) {
    for (const char* fixture : {"gemma4", "gemma4-moe"}) {
        SCOPED_TRACE(fixture);
        const std::string dir = test_support::fresh_dir(std::string("gemma4-back-") + fixture);
        const auto hf = Model::open(fixture_dir(fixture));
        const auto f16 = Model::open(write_gguf(*hf, "F16", dir + "/m-f16.gguf"));
        const ModelConfig& a = hf->config();
        const ModelConfig& b = f16->config();
        EXPECT_EQ(b.arch, Arch::Gemma4);
        ASSERT_EQ(b.gemma4_layers.size(), a.gemma4_layers.size());
        for (size_t l = 0; l < a.gemma4_layers.size(); ++l) {
            EXPECT_EQ(b.gemma4_layers[l].head_dim, a.gemma4_layers[l].head_dim) << l;
            EXPECT_EQ(b.gemma4_layers[l].n_kv_heads, a.gemma4_layers[l].n_kv_heads) << l;
            EXPECT_EQ(b.gemma4_layers[l].ffn, a.gemma4_layers[l].ffn) << l;
            EXPECT_EQ(b.gemma4_layers[l].v_is_k, a.gemma4_layers[l].v_is_k) << l;
            EXPECT_EQ(b.gemma4_layers[l].kv_source, a.gemma4_layers[l].kv_source) << l;
        }
        EXPECT_EQ(b.rope_partial_global, a.rope_partial_global);
        EXPECT_EQ(b.ple_dim, a.ple_dim);
        const double kld_f16 = mean_kld(*hf, *f16, fixture_dir(fixture));
        EXPECT_LE(kld_f16, kF16MaxKld);
        const auto q8 = Model::open(write_gguf(*hf, "Q8_0", dir + "/m-q8.gguf"));
        const double kld_q8 = mean_kld(*hf, *q8, fixture_dir(fixture));
        EXPECT_LE(kld_q8, kQ80MaxKld);
        std::printf("%s: KLD(HF || F16 GGUF) %.3g, KLD(HF || Q8_0 GGUF) %.3g\n", fixture, kld_f16,
                    kld_q8);
    }
}

std::vector<std::string> layer_names(int64_t l, const std::vector<std::string>& bases) {
    std::vector<std::string> out;
    for (const auto& b : bases)
        out.push_back("blk." + std::to_string(l) + "." + b +
                      (b.find('.') == std::string::npos ? ".weight" : ""));
    return out;
}

// gguf-py's MODEL_TENSORS[GEMMA4] as the converter maps these checkpoints: tied lm_head,
// no k/v on KV-shared layers, no v on K=V global layers, rope_freqs for the global layers.
TEST(Gemma4Gguf, TensorNamesShapesAndKeys) {
    const std::string dir = test_support::fresh_dir("gemma4-gguf");
    const auto hf = Model::open(fixture_dir("gemma4"));
    const GgufFile g = GgufFile::open(write_gguf(*hf, "Q8_0", dir + "/m.gguf"));
    std::vector<std::string> expected = {
        "token_embd.weight",           "output_norm.weight",         "per_layer_token_embd.weight",
        "per_layer_model_proj.weight", "per_layer_proj_norm.weight", "rope_freqs.weight"};
    const std::vector<std::string> common = {
        "attn_norm", "attn_q",   "attn_q_norm", "attn_output",       "post_attention_norm",
        "ffn_norm",  "ffn_gate", "ffn_up",      "ffn_down",          "post_ffw_norm",
        "inp_gate",  "proj",     "post_norm",   "layer_output_scale"};
    for (int64_t l = 0; l < 6; ++l) {
        for (const auto& n : layer_names(l, common)) expected.push_back(n);
        if (l < 4)
            for (const auto& n : layer_names(l, {"attn_k", "attn_k_norm"})) expected.push_back(n);
        if (l < 4 && l != 2) expected.push_back("blk." + std::to_string(l) + ".attn_v.weight");
    }
    std::vector<std::string> names;
    for (const auto& t : g.tensors()) names.push_back(t.name);
    std::sort(names.begin(), names.end());
    std::sort(expected.begin(), expected.end());
    EXPECT_EQ(names, expected);

    EXPECT_EQ(g.tensor("blk.0.attn_q.weight").ne, (std::vector<int64_t>{96, 128}));
    EXPECT_EQ(g.tensor("blk.2.attn_q.weight").ne, (std::vector<int64_t>{96, 256}));
    EXPECT_EQ(g.tensor("blk.2.attn_k.weight").ne, (std::vector<int64_t>{96, 64}));
    EXPECT_EQ(g.tensor("blk.0.attn_k.weight").ne, (std::vector<int64_t>{96, 64}));
    EXPECT_EQ(g.tensor("blk.5.ffn_gate.weight").ne, (std::vector<int64_t>{96, 384}));
    EXPECT_EQ(g.tensor("blk.3.ffn_gate.weight").ne, (std::vector<int64_t>{96, 192}));
    EXPECT_EQ(g.tensor("per_layer_token_embd.weight").ne, (std::vector<int64_t>{96, 512}));
    EXPECT_EQ(g.tensor("per_layer_model_proj.weight").ne, (std::vector<int64_t>{96, 96}));
    EXPECT_EQ(g.tensor("blk.1.inp_gate.weight").ne, (std::vector<int64_t>{96, 16}));
    EXPECT_EQ(g.tensor("blk.1.proj.weight").ne, (std::vector<int64_t>{16, 96}));
    EXPECT_EQ(g.tensor("blk.1.layer_output_scale.weight").ne, (std::vector<int64_t>{1}));
    // Fixed in F32 as llama.cpp keeps 1-D tensors; the matrices take the preset's type.
    EXPECT_EQ(g.tensor("blk.1.layer_output_scale.weight").type, GgmlType::F32);
    EXPECT_EQ(g.tensor("rope_freqs.weight").type, GgmlType::F32);
    EXPECT_EQ(g.tensor("blk.1.inp_gate.weight").type, GgmlType::Q8_0);
    EXPECT_EQ(g.tensor("per_layer_token_embd.weight").type, GgmlType::Q8_0);
    // llama-quantize keeps per_layer_model_proj as it is: fixed, not swept.
    EXPECT_NE(g.tensor("per_layer_model_proj.weight").type, GgmlType::Q8_0);
    EXPECT_FALSE(hf->get("per_layer_model_proj.weight").quantizable);
    EXPECT_TRUE(hf->get("per_layer_token_embd.weight").quantizable);
    const auto& rf = g.tensor("rope_freqs.weight");
    ASSERT_EQ(rf.n_elements(), 32);
    std::vector<float> f(32);
    std::memcpy(f.data(), g.tensor_data(rf).data(), 128);
    for (int i = 0; i < 32; ++i) EXPECT_FLOAT_EQ(f[i], i < 8 ? 1.0f : 1e30f) << i;

    std::vector<std::string> keys;
    for (const auto& [k, v] : g.kv())
        if (k.rfind("gemma4.", 0) == 0) keys.push_back(k.substr(7));
    // TextModel / Gemma3Model keys, then Gemma4Model's (rewritten ones keep their place).
    const std::vector<std::string> want = {"block_count",
                                           "context_length",
                                           "embedding_length",
                                           "feed_forward_length",
                                           "attention.head_count",
                                           "attention.head_count_kv",
                                           "rope.freq_base",
                                           "rope.freq_base_swa",
                                           "attention.layer_norm_rms_epsilon",
                                           "attention.key_length",
                                           "attention.value_length",
                                           "final_logit_softcapping",
                                           "attention.sliding_window",
                                           "attention.shared_kv_layers",
                                           "embedding_length_per_layer_input",
                                           "attention.sliding_window_pattern",
                                           "attention.key_length_swa",
                                           "attention.value_length_swa",
                                           "rope.dimension_count",
                                           "rope.dimension_count_swa"};
    EXPECT_EQ(keys, want);
    EXPECT_EQ(g.get("gemma4.attention.key_length").as_int(), 64);
    EXPECT_EQ(g.get("gemma4.attention.key_length_swa").as_int(), 32);
    EXPECT_EQ(g.get("gemma4.attention.shared_kv_layers").as_int(), 2);
    EXPECT_EQ(g.get("gemma4.embedding_length_per_layer_input").as_int(), 16);
    EXPECT_EQ(g.get("gemma4.rope.dimension_count").as_int(), 64);
    EXPECT_EQ(g.get("gemma4.rope.dimension_count_swa").as_int(), 32);
    EXPECT_FLOAT_EQ(g.get("gemma4.final_logit_softcapping").as_float(), 8.0f);
    const GgufValue& kv = g.get("gemma4.attention.head_count_kv");
    ASSERT_EQ(kv.type, GgufValueType::ARRAY);
    std::vector<int64_t> kv_heads, ffn;
    for (const auto& v : kv.array) kv_heads.push_back(v.as_int());
    EXPECT_EQ(kv_heads, (std::vector<int64_t>{2, 2, 1, 2, 2, 1}));
    for (const auto& v : g.get("gemma4.feed_forward_length").array) ffn.push_back(v.as_int());
    EXPECT_EQ(ffn, (std::vector<int64_t>{192, 192, 192, 192, 384, 384}));
    std::vector<bool> swa;
    for (const auto& v : g.get("gemma4.attention.sliding_window_pattern").array)
        swa.push_back(v.as_bool());
    EXPECT_EQ(swa, (std::vector<bool>{true, true, false, true, true, false}));
}

TEST(Gemma4Gguf, MoeTensorsAndKeys) {
    const std::string dir = test_support::fresh_dir("gemma4-moe-gguf");
    const auto hf = Model::open(fixture_dir("gemma4-moe"));
    const GgufFile g = GgufFile::open(write_gguf(*hf, "Q8_0", dir + "/m.gguf"));
    EXPECT_EQ(g.tensor("blk.0.ffn_gate_up_exps.weight").ne, (std::vector<int64_t>{96, 96, 4}));
    EXPECT_EQ(g.tensor("blk.0.ffn_down_exps.weight").ne, (std::vector<int64_t>{48, 96, 4}));
    EXPECT_EQ(g.tensor("blk.0.ffn_gate_inp.weight").ne, (std::vector<int64_t>{96, 4}));
    EXPECT_EQ(g.tensor("blk.0.ffn_gate_inp.scale").ne, (std::vector<int64_t>{96}));
    EXPECT_EQ(g.tensor("blk.0.ffn_down_exps.scale").ne, (std::vector<int64_t>{4}));
    for (const char* n : {"pre_ffw_norm_2", "post_ffw_norm_1", "post_ffw_norm_2"})
        EXPECT_EQ(g.tensor(std::string("blk.3.") + n + ".weight").ne, (std::vector<int64_t>{96}));
    EXPECT_EQ(g.tensor("blk.0.ffn_gate_up_exps.weight").type, GgmlType::Q8_0);
    EXPECT_NE(g.tensor("blk.0.ffn_gate_inp.weight").type, GgmlType::Q8_0);  // routers stay
    EXPECT_EQ(g.get("gemma4.expert_count").as_int(), 4);
    EXPECT_EQ(g.get("gemma4.expert_used_count").as_int(), 2);
    EXPECT_EQ(g.get("gemma4.expert_feed_forward_length").as_int(), 48);
    EXPECT_EQ(g.get("gemma4.attention.shared_kv_layers").as_int(), 0);
    EXPECT_EQ(g.get("gemma4.embedding_length_per_layer_input").as_int(), 0);
    EXPECT_EQ(g.find_tensor("per_layer_token_embd.weight"), nullptr);
}

// transformers pads per_layer_config's layer numbers to the widest ("04" of 35 layers, as it
// wrote a 35-layer model's config on the device); the padded keys give the same layers, and a
// key that is no layer number is refused naming it.
TEST(Gemma4Config, ZeroPaddedPerLayerKeys) {
    const auto plain = Model::open(fixture_dir("gemma4"));
    const auto padded = Model::open(edited_copy("gemma4", [](auto& c) {
        nlohmann::json keys = nlohmann::json::object();
        for (const auto& [k, v] : c["per_layer_config"].items()) keys["0" + k] = v;
        c["per_layer_config"] = keys;
    }));
    const auto& a = plain->config().gemma4_layers;
    const auto& b = padded->config().gemma4_layers;
    ASSERT_EQ(a.size(), b.size());
    int64_t global = 0;
    for (size_t l = 0; l < a.size(); ++l) {
        EXPECT_EQ(a[l].head_dim, b[l].head_dim) << l;
        EXPECT_EQ(a[l].n_kv_heads, b[l].n_kv_heads) << l;
        global += a[l].head_dim == 64;
    }
    EXPECT_EQ(global, 2);  // the fixture's two global layers
    try {
        Model::open(edited_copy("gemma4", [](auto& c) {
            c["per_layer_config"]["2x"] = {{"head_dim", 64}};
        }));
        ADD_FAILURE() << "a per_layer_config key that is no layer number was accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("per_layer_config[\"2x\"]"), std::string::npos)
            << e.what();
    }
}

TEST(Gemma4Refusals, ByName) {
    auto message = [](const std::function<void(nlohmann::json&)>& edit) {
        try {
            Model::open(edited_copy("gemma4", edit));
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string();
    };
    EXPECT_NE(message([](auto& c) {
                  c["architectures"] = {"Gemma4ForConditionalGeneration"};
              }).find("vision and audio towers"),
              std::string::npos);
    EXPECT_NE(message([](auto& c) {
                  c["use_bidirectional_attention"] = "all";
              }).find("use_bidirectional_attention"),
              std::string::npos);
    EXPECT_NE(message([](auto& c) {
                  c["rope_parameters"]["full_attention"]["rope_type"] = "yarn";
              }).find("yarn"),
              std::string::npos);
    // The GPU engine runs Gemma 4 (tests/cuda: CudaFamilies.*), dense and MoE.
    for (const char* name : {"gemma4", "gemma4-moe"})
        EXPECT_NO_THROW(check_layer_supported(Model::open(fixture_dir(name))->config(), name,
                                              EngineKind::Cuda));
}

}  // namespace
}  // namespace quantlens
