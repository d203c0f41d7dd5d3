// Forward pass against PyTorch/transformers float32 outputs (models/*/golden.json and
// golden_logits_f32.bin) for the three test architectures, plus overrides and hooks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mmap_file.h"
#include "engine/engine.h"
#include "model/model.h"
#include "support/test_data.h"

namespace quantlens {
namespace {

using quantlens::test_support::shared_dir;

// Acceptance tolerances (issue 4): logits to 2e-3 absolute, hidden-state norms to 1e-3
// relative. Our f32 sgemm sums in a different order than PyTorch; the observed error is
// ~1e-5, so these bounds catch any real deviation (a wrong RoPE or norm moves logits by >0.1).
constexpr float kLogitAbsTol = 2e-3f;
constexpr double kNormRelTol = 1e-3;

struct Golden {
    std::vector<int32_t> ids;
    std::vector<int64_t> argmax;
    std::vector<std::vector<double>> norms;
    std::vector<float> logits;  // [64, 4096]
};

Golden load_golden(const std::string& dir) {
    Golden g;
    const auto j = nlohmann::json::parse(read_text_file(dir + "/golden.json"));
    g.ids = j.at("input_ids").get<std::vector<int32_t>>();
    g.argmax = j.at("logits_argmax").get<std::vector<int64_t>>();
    g.norms = j.at("hidden_state_norms").get<std::vector<std::vector<double>>>();
    MappedFile f(dir + "/golden_logits_f32.bin");
    g.logits.resize(f.size() / sizeof(float));
    std::memcpy(g.logits.data(), f.data(), f.size());
    return g;
}

double row_norm(const float* x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
    return std::sqrt(s);
}

// The golden logits come from transformers with the BF16 checkpoint cast to float32, which
// also rounds RoPE's inv_freq buffer to BF16; EngineOptions::rope_bf16_freqs reproduces it.
// With exact frequencies (llama.cpp's convention, used by eval) the logits still agree to
// kExactRopeAbsTol and every argmax matches.
constexpr float kExactRopeAbsTol = 0.05f;

void check_model(const std::string& name, bool bf16_freqs = true) {
    const std::string dir = shared_dir() + "/models/" + name;
    const Golden g = load_golden(dir);
    const auto model = Model::open(dir);
    EngineOptions options;
    options.rope_bf16_freqs = bf16_freqs;
    Engine engine(*model, options);
    const int64_t T = static_cast<int64_t>(g.ids.size()), V = engine.vocab();
    ASSERT_EQ(g.logits.size(), static_cast<size_t>(T * V));
    ASSERT_EQ(g.norms.size(), static_cast<size_t>(engine.n_layers() + 1));

    std::vector<std::vector<double>> norms(engine.n_layers() + 1);
    engine.set_hook([&](const HookEvent& e) {
        int slot = -1;
        if (e.kind == HookEvent::Kind::Embedding) slot = 0;
        if (e.kind == HookEvent::Kind::LayerOutput && e.layer + 1 < engine.n_layers())
            slot = e.layer + 1;
        if (e.kind == HookEvent::Kind::FinalNorm) slot = static_cast<int>(engine.n_layers());
        if (slot < 0) return;
        for (int64_t r = 0; r < e.rows; ++r)
            norms[slot].push_back(row_norm(e.data + r * e.cols, e.cols));
    });
    const std::vector<float> logits = engine.forward(g.ids, 1, T);
    float max_diff = 0;
    for (int64_t t = 0; t < T; ++t) {
        const float* row = logits.data() + t * V;
        max_diff = std::max(max_diff, [&] {
            float m = 0;
            for (int64_t v = 0; v < V; ++v)
                m = std::max(m, std::fabs(row[v] - g.logits[t * V + v]));
            return m;
        }());
        EXPECT_EQ(std::max_element(row, row + V) - row, g.argmax[t]) << name << " position " << t;
    }
    EXPECT_LE(max_diff, bf16_freqs ? kLogitAbsTol : kExactRopeAbsTol) << name;
    if (!bf16_freqs) return;
    for (size_t s = 0; s < norms.size(); ++s) {
        ASSERT_EQ(norms[s].size(), g.norms[s].size()) << name << " hidden state " << s;
        for (size_t t = 0; t < norms[s].size(); ++t) {
            ASSERT_NEAR(norms[s][t], g.norms[s][t], kNormRelTol * g.norms[s][t])
                << name << " hidden state " << s << " position " << t;
        }
    }
    std::printf("%s: max |logit diff| = %.3g\n", name.c_str(), max_diff);
}

TEST(EngineGolden, Llama8m) {
    check_model("llama-8m");
}
TEST(EngineGolden, TinyQwen2) {
    check_model("tiny-qwen2");
}
TEST(EngineGolden, TinyMoe) {
    check_model("tiny-moe");
}
TEST(EngineGolden, ExactRopeStaysClose) {
    check_model("llama-8m", false);
    check_model("tiny-moe", false);
}

TEST(EngineGolden, BatchesAndLayerSteppingAgreeWithForward) {
    const std::string dir = shared_dir() + "/models/llama-8m";
    const Golden g = load_golden(dir);
    const auto model = Model::open(dir);
    Engine engine(*model);
    const int64_t T = 32, V = engine.vocab();
    std::vector<int32_t> two(g.ids.begin(), g.ids.begin() + T);
    two.insert(two.end(), g.ids.begin() + 32, g.ids.begin() + 64);
    const auto batched = engine.forward(two, 2, T, 16);  // positions 16..31 of each
    std::vector<float> h = engine.embed(std::span(two).subspan(T, T));
    for (int64_t l = 0; l < engine.n_layers(); ++l) engine.run_layer(l, h.data(), 1, T);
    const auto single = engine.head(h.data(), 1, T, 16);
    ASSERT_EQ(batched.size(), static_cast<size_t>(2 * 16 * V));
    for (int64_t i = 0; i < 16 * V; ++i) ASSERT_NEAR(batched[16 * V + i], single[i], 1e-4f);
}

TEST(EngineGolden, OverridesSwapAndRestoreWeights) {
    const std::string dir = shared_dir() + "/models/llama-8m";
    const Golden g = load_golden(dir);
    const auto model = Model::open(dir);
    Engine engine(*model);
    const auto base = engine.forward(g.ids, 1, 64, 63);
    engine.override_with_type("blk.3.ffn_down.weight", GgmlType::Q4_0);
    const auto q4 = engine.forward(g.ids, 1, 64, 63);
    float diff = 0;
    for (size_t i = 0; i < base.size(); ++i) diff = std::max(diff, std::fabs(base[i] - q4[i]));
    EXPECT_GT(diff, 1e-3f);  // 4-bit weights change the logits
    EXPECT_LT(diff, 2.0f);   // but one tensor does not wreck them
    std::vector<float> zeros(engine.original("blk.3.ffn_down.weight").size(), 0.0f);
    EXPECT_THROW(engine.set_override("blk.3.ffn_down.weight", std::vector<float>(5)), Error);
    EXPECT_THROW(engine.set_override("no.such.weight", zeros), Error);
    engine.clear_overrides();
    EXPECT_EQ(engine.forward(g.ids, 1, 64, 63), base);
}

TEST(EngineGolden, BadTokenIdIsAnError) {
    const auto model = Model::open(shared_dir() + "/models/tiny-qwen2");
    Engine engine(*model);
    const std::vector<int32_t> ids = {0, 5000};
    EXPECT_THROW(engine.forward(ids, 1, 2), Error);
}

}  // namespace
}  // namespace quantlens
