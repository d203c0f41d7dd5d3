// The engine's quantized path (engine.h, ggml_numerics on a GGUF): which weights are read in
// place, that the result equals the float path fed the same weights and the same 8-bit
// activation rounding (the emulation it replaces) up to float summation order, that it does
// not depend on the thread count, that original() still gives the weights, and that a NaN
// scale inside a block is refused by name. PPL against llama.cpp's own figure is checked in
// tests/analysis/test_eval_kld.cpp (full 100-chunk setup).
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstring>
#include <map>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "core/mmap_file.h"
#include "core/parallel.h"
#include "engine/engine.h"
#include "engine/kernels.h"
#include "engine/tokenizer.h"
#include "formats/gguf.h"
#include "model/model.h"
#include "quant/blocks.h"
#include "quant/quant.h"
#include "quant/vec_dot.h"
#include "support/logits_kld.h"
#include "support/test_data.h"

namespace quantlens {
namespace {

using quantlens::test_support::scratch_dir;
using quantlens::test_support::shared_dir;

std::string q4km() {
    return shared_dir() + "/models/llama-8m-Q4_K_M.gguf";
}

std::vector<int32_t> some_tokens(int64_t n) {
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) t[i] = static_cast<int32_t>((i * 7919 + 13) % 4096);
    t[0] = 0;  // BOS
    return t;
}

EngineOptions ggml() {
    EngineOptions o;
    o.ggml_numerics = true;
    return o;
}

TEST(EngineQuantized, MatricesOfCoveredTypesAreReadInPlace) {
    const auto model = Model::open(q4km());
    const Engine q(*model, ggml());
    EXPECT_TRUE(q.reads_in_place("blk.0.attn_q.weight"));      // Q4_K
    EXPECT_TRUE(q.reads_in_place("blk.0.ffn_down.weight"));    // Q6_K in this file
    EXPECT_TRUE(q.reads_in_place("token_embd.weight"));        // rows dequantized per token
    EXPECT_FALSE(q.reads_in_place("blk.0.attn_norm.weight"));  // F32 vector
    const Engine plain(*model);                                // default numerics: floats
    EXPECT_FALSE(plain.reads_in_place("blk.0.attn_q.weight"));
    // original() dequantizes on demand: the same floats Model::read_f32 gives.
    const std::string name = "blk.3.ffn_up.weight";
    EXPECT_EQ(q.original(name), model->read_f32(model->get(name)));
}

// The emulation: float weights (dequantized) with each matmul input rounded to Q8_K/Q8_0
// as ggml would. Same integers and scales in another summation order, so one matmul agrees
// to float rounding (next test); through the layers a last-bit difference now and then flips
// an activation's 8-bit rounding by one step, and the flips propagate: measured mean KLD
// between the two paths 7.2e-4 on this text. Bound: under 10 % of what Q4_K_M itself costs
// (0.019 against the full-precision model, docs/REFERENCE-FIGURES.md); a wrong scale or
// sub-block would cost more than the quantization.
constexpr double kPathKldBound = 2e-3;

using test_support::mean_kld;

TEST(EngineQuantized, AgreesWithTheFloatEmulationOfGgmlRounding) {
    const auto model = Model::open(q4km());
    Engine q(*model, ggml()), emulated(*model, ggml());
    for (const TensorInfo& t : model->tensors())
        if (emulated.reads_in_place(t.name))
            emulated.set_override(t.name, model->read_f32(t), t.type);
    ASSERT_FALSE(emulated.reads_in_place("blk.0.attn_q.weight"));
    std::vector<float> embed_q, embed_e;
    q.set_hook([&](const HookEvent& e) {
        if (e.kind == HookEvent::Kind::Embedding) embed_q.assign(e.data, e.data + e.rows * e.cols);
    });
    emulated.set_hook([&](const HookEvent& e) {
        if (e.kind == HookEvent::Kind::Embedding) embed_e.assign(e.data, e.data + e.rows * e.cols);
    });
    const int64_t T = 128;  // real text: the first tokens of eval.txt
    std::vector<int32_t> tokens = Tokenizer::load(*model).encode(
        read_text_file(shared_dir() + "/data/eval.txt").substr(0, 4000), true);
    ASSERT_GE(static_cast<int64_t>(tokens.size()), T);
    tokens.resize(T);
    const std::vector<float> a = q.forward(tokens, 1, T), b = emulated.forward(tokens, 1, T);
    EXPECT_EQ(embed_q, embed_e);  // get_rows of the blocks = the dequantized table's rows
    ASSERT_EQ(a.size(), b.size());
    EXPECT_NE(a, b);  // a different code path, not the same floats
    const double kld = mean_kld(b, a, q.vocab());
    EXPECT_LT(kld, kPathKldBound);
    std::printf("mean KLD between the quantized path and the emulation: %.3g\n", kld);
}

// One product on real activations (blk.2's inputs while llama-8m reads text): the quantized
// path equals the float product of the rounded activations and the dequantized weights up to
// float summation order (|Δ| ≤ 1e-6 of the largest output).
constexpr double kOneMatmulRelTol = 1e-6;

TEST(EngineQuantized, OneMatmulEqualsTheEmulationToFloatRounding) {
    const auto model = Model::open(q4km());
    Engine q(*model, ggml());
    std::map<std::string, std::vector<float>> inputs;
    q.set_hook([&](const HookEvent& e) {
        if (e.kind == HookEvent::Kind::LinearInput && e.layer == 2)
            inputs[*e.tensor].assign(e.data, e.data + e.rows * e.cols);
    });
    const int64_t T = 64;
    q.forward(some_tokens(T), 1, T);
    for (const char* name : {"blk.2.attn_q.weight", "blk.2.ffn_down.weight"}) {
        SCOPED_TRACE(name);
        const TensorInfo& t = model->get(name);
        const int64_t IN = t.n_per_row(), OUT = t.n_rows();
        std::vector<float> x = inputs.at(name);
        ASSERT_EQ(static_cast<int64_t>(x.size()), T * IN);
        std::vector<float> fast(T * OUT), emulated(T * OUT);
        vec_dot::matmul(fast.data(), x.data(), t.type, model->raw(t).data(), nullptr, T, IN, OUT);
        round_activations(x.data(), T, IN, ggml_act_rounding(t.type));
        const std::vector<float> w = model->read_f32(t);
        matmul_forward_ref(emulated.data(), x.data(), w.data(), nullptr, T, IN, OUT);
        double max_diff = 0, max_abs = 0;
        for (size_t i = 0; i < fast.size(); ++i) {
            max_diff = std::max(max_diff, std::fabs(static_cast<double>(fast[i]) - emulated[i]));
            max_abs = std::max(max_abs, std::fabs(static_cast<double>(emulated[i])));
        }
        EXPECT_GT(max_abs, 0.1);
        EXPECT_LE(max_diff, kOneMatmulRelTol * max_abs);
    }
}

// compare's QUANT side: the full-precision model with every tensor of the GGUF installed
// (blocks read in place where covered, floats otherwise) is the GGUF model, bit for bit.
TEST(EngineQuantized, BlockOverridesMakeTheFpModelTheQuantizedOne) {
    const auto fp = Model::open(shared_dir() + "/models/llama-8m");
    const auto gguf = Model::open(q4km());
    Engine swapped(*fp, ggml());
    const Engine direct(*gguf, ggml());
    for (const TensorInfo& t : gguf->tensors())
        if (!swapped.set_override_blocks(t.name, t.type, gguf->raw(t), gguf->path()))
            swapped.set_override(t.name, gguf->read_f32(t), t.type);
    EXPECT_TRUE(swapped.reads_in_place("blk.4.ffn_gate.weight"));
    EXPECT_TRUE(swapped.has_override("blk.4.ffn_gate.weight"));
    const std::vector<int32_t> tokens = some_tokens(48);
    const std::vector<float> a = swapped.forward(tokens, 1, 48), b = direct.forward(tokens, 1, 48);
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0);
    // Clearing the override gives the full-precision weight back.
    swapped.clear_override("blk.4.ffn_gate.weight");
    EXPECT_FALSE(swapped.reads_in_place("blk.4.ffn_gate.weight"));
    // Blocks of the wrong size are refused by name.
    const TensorInfo& k = gguf->get("blk.0.attn_k.weight");
    EXPECT_THROW(swapped.set_override_blocks("blk.0.attn_q.weight", k.type, gguf->raw(k), "x.gguf"),
                 Error);
}

// Random blocks of `type` whose values have the RMS of `w` (the quantizers of these grids
// take ~1 s to build their search tables; the kernels do not care where blocks come from).
// Every type here keeps one F16 super-block scale at offset 0, except IQ1_M, whose scale is
// the top nibbles of its four scale words.
std::vector<uint8_t> random_blocks_like(GgmlType type, const std::vector<float>& w, int64_t rows,
                                        int64_t cols) {
    std::mt19937 rng(static_cast<uint32_t>(type));
    std::vector<uint8_t> q(ggml_row_size(type, cols) * rows);
    for (uint8_t& b : q) b = static_cast<uint8_t>(rng());
    const GgmlTypeInfo& info = ggml_type_info(type);
    const auto set_scale = [&](float d) {
        const uint16_t h = f32_to_f16(d);
        for (size_t b = 0; b < q.size() / info.bytes_per_block; ++b) {
            uint8_t* block = q.data() + b * info.bytes_per_block;
            if (type != GgmlType::IQ1_M) {
                std::memcpy(block, &h, 2);
                continue;
            }
            uint8_t* words = block + offsetof(blocks::block_iq1_m, scales);
            for (int k = 0; k < 4; ++k)
                words[2 * k + 1] =
                    static_cast<uint8_t>((words[2 * k + 1] & 0x0F) | (((h >> (4 * k)) & 0xF) << 4));
        }
    };
    const auto rms = [](const std::vector<float>& v) {
        double s = 0;
        for (float x : v) s += static_cast<double>(x) * x;
        return std::sqrt(s / static_cast<double>(v.size()));
    };
    set_scale(1e-3f);
    std::vector<float> deq(w.size());
    dequantize(type, q.data(), deq.data(), rows, cols);
    set_scale(static_cast<float>(1e-3 * rms(w) / rms(deq)));
    return q;
}

// The types added to the quantized path after Q4_K_M (i-quants, TQ1_0/TQ2_0, BF16): llama-8m's
// weights quantized to one of them per matrix, read in place, against the same blocks
// dequantized to floats with ggml's activation rounding (the emulation). Same bound as the
// Q4_K_M comparison above: a wrong grid, sign or scale would cost far more than 2e-3.
TEST(EngineQuantized, IQuantsTernaryAndBf16AgreeWithTheirEmulation) {
    const auto fp = Model::open(shared_dir() + "/models/llama-8m");
    Engine blocks(*fp, ggml()), emulated(*fp, ggml());
    const std::pair<const char*, GgmlType> installs[] = {
        // [128, 256] matrices: fast
        {"blk.0.attn_k.weight", GgmlType::IQ3_S},   {"blk.0.attn_v.weight", GgmlType::IQ2_XXS},
        {"blk.1.attn_k.weight", GgmlType::IQ3_XXS}, {"blk.1.attn_v.weight", GgmlType::IQ2_XS},
        {"blk.2.attn_k.weight", GgmlType::IQ2_S},   {"blk.2.attn_v.weight", GgmlType::IQ1_S},
        {"blk.3.attn_k.weight", GgmlType::IQ1_M},   {"blk.3.attn_v.weight", GgmlType::TQ2_0},
        {"blk.4.attn_q.weight", GgmlType::BF16},    {"blk.5.attn_k.weight", GgmlType::IQ4_XS},
        {"blk.5.attn_v.weight", GgmlType::TQ1_0},
    };
    std::vector<std::vector<uint8_t>> stored;  // the blocks must outlive the engine's use
    for (const auto& [name, type] : installs) {
        SCOPED_TRACE(name);
        const TensorInfo& t = fp->get(name);
        const std::vector<float> w = fp->read_f32(t);
        const bool fast_quantizer = type == GgmlType::IQ3_S || type == GgmlType::IQ3_XXS ||
                                    type == GgmlType::TQ2_0 || type == GgmlType::TQ1_0 ||
                                    type == GgmlType::BF16 || type == GgmlType::IQ4_XS;
        if (fast_quantizer) {
            stored.emplace_back(ggml_row_size(type, t.n_per_row()) * t.n_rows());
            quantize(type, w.data(), stored.back().data(), t.n_rows(), t.n_per_row());
        } else {
            stored.push_back(random_blocks_like(type, w, t.n_rows(), t.n_per_row()));
        }
        std::vector<float> deq(w.size());
        dequantize(type, stored.back().data(), deq.data(), t.n_rows(), t.n_per_row());
        ASSERT_TRUE(blocks.set_override_blocks(name, type, stored.back(), "test"));
        emulated.set_override(name, std::move(deq), type);
        EXPECT_TRUE(blocks.reads_in_place(name));
    }
    const int64_t T = 64;
    std::vector<int32_t> tokens = Tokenizer::load(*fp).encode(
        read_text_file(shared_dir() + "/data/eval.txt").substr(0, 4000), true);
    ASSERT_GE(static_cast<int64_t>(tokens.size()), T);
    tokens.resize(T);
    const std::vector<float> a = blocks.forward(tokens, 1, T), b = emulated.forward(tokens, 1, T);
    ASSERT_EQ(a.size(), b.size());
    EXPECT_NE(a, b);
    const double kld = mean_kld(b, a, blocks.vocab());
    EXPECT_LT(kld, kPathKldBound);
    std::printf("mean KLD between the quantized path and the emulation: %.3g\n", kld);
}

TEST(EngineQuantized, ResultsDoNotDependOnTheThreadCount) {
    const auto model = Model::open(q4km());
    const Engine q(*model, ggml());
    const std::vector<int32_t> tokens = some_tokens(2 * 40);
    const int saved = num_threads();
    set_num_threads(1);
    const std::vector<float> one = q.forward(tokens, 2, 40, 20);
    set_num_threads(2);
    const std::vector<float> two = q.forward(tokens, 2, 40, 20);
    set_num_threads(saved);
    ASSERT_EQ(one.size(), two.size());
    EXPECT_EQ(std::memcmp(one.data(), two.data(), one.size() * 4), 0);
}

TEST(EngineQuantized, ANonFiniteScaleInABlockIsRefusedByName) {
    const GgufFile src = GgufFile::open(q4km());
    const std::string dir = scratch_dir("engine-quantized/nan-scale");
    GgufWriter w;
    for (const auto& [key, value] : src.kv()) w.add_kv(key, value);
    // blk.1.attn_k.weight is Q4_K: each 144-byte block starts with its F16 scale d.
    std::vector<uint8_t> bytes;
    for (const auto& t : src.tensors()) {
        if (t.name != "blk.1.attn_k.weight") {
            w.add_tensor(t.name, t.ne, t.type, src.tensor_data(t));
            continue;
        }
        ASSERT_EQ(t.type, GgmlType::Q4_K);
        const auto data = src.tensor_data(t);
        bytes.assign(data.begin(), data.end());
        const uint16_t nan = 0x7e00;
        std::memcpy(bytes.data() + 144 * 3, &nan, 2);  // row 3 (one block per 256-wide row)
        w.add_tensor(t.name, t.ne, t.type, bytes);
    }
    w.write(dir + "/nan.gguf");
    const auto model = Model::open(dir + "/nan.gguf");
    try {
        Engine engine(*model, ggml());
        FAIL() << "expected Error";
    } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("blk.1.attn_k.weight"), std::string::npos) << msg;
        EXPECT_NE(msg.find("nan"), std::string::npos) << msg;
    }
}

}  // namespace
}  // namespace quantlens
