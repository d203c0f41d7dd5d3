// Quantized weights kept in their GGUF blocks on the GPU (issue 28): the dequantization
// kernels against the CPU's dequantize bit for bit, and engines holding a quantized file's
// blocks against engines holding its dequantized values (the path before): logits equal bit
// for bit when no GEMM is split into tiles, weight memory the file's tensor bytes, overrides and
// streaming unchanged. Skips when no GPU is present.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <vector>

#include <unistd.h>

#include "analysis/measure/kld.h"
#include "analysis/write/presets.h"
#include "analysis/write/quantize.h"
#include "core/error.h"
#include "core/half.h"
#include "engine/cuda/cuda_common.cuh"
#include "engine/cuda/cuda_engine.h"
#include "engine/cuda/dequant.h"
#include "model/model.h"
#include "quant/quant.h"
#include "support/gpu_test.h"
#include "support/logits_kld.h"
#include "support/random_data.h"

namespace quantlens::cuda {
namespace {

const std::string kLlama = test_support::kExampleLlama;
const std::string kQwenMoe = std::string(QL_SOURCE_DIR) + "/tests/fixtures/qwen3moe";
const std::string kGptOssMxfp4 = std::string(QL_SOURCE_DIR) + "/tests/fixtures/gptoss-mxfp4";

const GgmlType kKernelTypes[] = {
    GgmlType::Q4_0,   GgmlType::Q4_1,   GgmlType::Q5_0,    GgmlType::Q5_1,  GgmlType::Q8_0,
    GgmlType::Q2_K,   GgmlType::Q3_K,   GgmlType::Q4_K,    GgmlType::Q5_K,  GgmlType::Q6_K,
    GgmlType::IQ4_NL, GgmlType::IQ4_XS, GgmlType::MXFP4,   GgmlType::TQ2_0, GgmlType::IQ2_XXS,
    GgmlType::IQ2_XS, GgmlType::IQ2_S,  GgmlType::IQ3_XXS, GgmlType::IQ3_S, GgmlType::IQ1_S,
    GgmlType::IQ1_M};

std::vector<float> download_floats(const DeviceBuffer& d, size_t n, Dtype dt) {
    std::vector<float> out(n);
    if (dt == Dtype::F32) {
        QL_CUDA(cudaMemcpy(out.data(), d.as(), n * 4, cudaMemcpyDeviceToHost));
        return out;
    }
    std::vector<uint16_t> bits(n);
    QL_CUDA(cudaMemcpy(bits.data(), d.as(), n * 2, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; ++i)
        out[i] = dt == Dtype::F16 ? f16_to_f32(bits[i]) : bf16_to_f32(bits[i]);
    return out;
}

TEST(CudaDequant, MatchesCpuDequantizeBitForBit) {
    SKIP_WITHOUT_GPU();
    const int64_t rows = 6, cols = 512;
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.0f, 0.02f);
    std::vector<float> x(static_cast<size_t>(rows * cols));
    for (float& v : x) v = normal(rng);
    x[3] = 0.9f;  // an outlier, so some blocks use wide scales
    std::vector<float> importance(static_cast<size_t>(cols));  // IQ1/IQ2 need one
    for (float& v : importance) v = 0.5f + std::fabs(normal(rng)) * 50;
    for (GgmlType type : kKernelTypes) {
        SCOPED_TRACE(ggml_type_display_name(type));
        ASSERT_TRUE(gpu_dequant_supported(type));
        const size_t row_bytes = ggml_row_size(type, cols);
        std::vector<uint8_t> blocks(row_bytes * rows);
        quantize(type, x.data(), blocks.data(), rows, cols, importance.data());
        std::vector<float> ref(x.size());
        dequantize(type, blocks.data(), ref.data(), rows, cols);
        DeviceBuffer d_blocks(blocks.size()), out(x.size() * 4);
        QL_CUDA(cudaMemcpy(d_blocks.as(), blocks.data(), blocks.size(), cudaMemcpyHostToDevice));
        for (Dtype dt : {Dtype::F32, Dtype::F16, Dtype::BF16}) {
            launch_dequantize_rows(type, d_blocks.as(), row_bytes, cols, nullptr, 0, rows, out.as(),
                                   dt);
            const std::vector<float> got = download_floats(out, x.size(), dt);
            int64_t differ = 0;
            for (size_t i = 0; i < x.size(); ++i) {
                const float want = dt == Dtype::F32   ? ref[i]
                                   : dt == Dtype::F16 ? round_to_f16(ref[i])
                                                      : bf16_to_f32(f32_to_bf16(ref[i]));
                if (std::memcmp(&want, &got[i], 4) != 0) ++differ;
            }
            EXPECT_EQ(differ, 0) << "values differing from the CPU's, storage "
                                 << static_cast<int>(dt);
        }
        // Gathered rows (the embedding's path): rows 5, 0, 3 in that order.
        const std::vector<int32_t> ids = {5, 0, 3};
        DeviceBuffer d_ids(ids.size() * 4);
        QL_CUDA(cudaMemcpy(d_ids.as(), ids.data(), ids.size() * 4, cudaMemcpyHostToDevice));
        launch_dequantize_rows(type, d_blocks.as(), row_bytes, cols, d_ids.as<int32_t>(), 0,
                               static_cast<int64_t>(ids.size()), out.as(), Dtype::F32);
        const std::vector<float> got = download_floats(out, ids.size() * cols, Dtype::F32);
        for (size_t r = 0; r < ids.size(); ++r)
            EXPECT_EQ(std::memcmp(got.data() + r * cols, ref.data() + ids[r] * cols, cols * 4), 0)
                << "gathered row " << r;
    }
    EXPECT_FALSE(gpu_dequant_supported(GgmlType::TQ1_0));  // stored dequantized instead
}

// Throughput on an 8B FFN matrix (Q4_K, 14336 × 4096 → F16), against a device copy of the
// same output bytes in the same run; the values against the CPU's, as above.
TEST(CudaDequant, ThroughputOnAnFfnMatrix) {
    SKIP_WITHOUT_GPU();
    const int64_t rows = 14336, cols = 4096;
    const std::vector<float> x =
        test_support::random_normal(static_cast<size_t>(rows * cols), 3, 0.02f);
    const size_t row_bytes = ggml_row_size(GgmlType::Q4_K, cols);
    std::vector<uint8_t> blocks(row_bytes * rows);
    quantize(GgmlType::Q4_K, x.data(), blocks.data(), rows, cols, nullptr);
    DeviceBuffer d_blocks(blocks.size()), out(x.size() * 2), copy(x.size() * 2);
    QL_CUDA(cudaMemcpy(d_blocks.as(), blocks.data(), blocks.size(), cudaMemcpyHostToDevice));
    cudaEvent_t a, b;
    QL_CUDA(cudaEventCreate(&a));
    QL_CUDA(cudaEventCreate(&b));
    auto time_ms = [&](auto&& work) {
        work();  // warm-up
        QL_CUDA(cudaEventRecord(a));
        for (int i = 0; i < 20; ++i) work();
        QL_CUDA(cudaEventRecord(b));
        QL_CUDA(cudaEventSynchronize(b));
        float ms = 0;
        QL_CUDA(cudaEventElapsedTime(&ms, a, b));
        return ms / 20;
    };
    const float dequant_ms = time_ms([&] {
        launch_dequantize_rows(GgmlType::Q4_K, d_blocks.as(), row_bytes, cols, nullptr, 0, rows,
                               out.as(), Dtype::F16);
    });
    const float copy_ms = time_ms([&] {
        QL_CUDA(cudaMemcpyAsync(copy.as(), out.as(), x.size() * 2, cudaMemcpyDeviceToDevice));
    });
    std::printf(
        "Q4_K %lld x %lld -> F16: %.3f ms (%.0f GB/s written); device copy of the output "
        "%.3f ms; ratio %.2f\n",
        static_cast<long long>(rows), static_cast<long long>(cols), dequant_ms,
        x.size() * 2 / dequant_ms / 1e6, copy_ms, dequant_ms / copy_ms);
    std::vector<float> ref(x.size());
    dequantize(GgmlType::Q4_K, blocks.data(), ref.data(), rows, cols);
    const std::vector<float> got = download_floats(out, x.size(), Dtype::F16);
    for (size_t i = 0; i < x.size(); i += 4099) ASSERT_EQ(got[i], round_to_f16(ref[i])) << i;
    cudaEventDestroy(a);
    cudaEventDestroy(b);
}

// A quantized GGUF of `hf_dir` (preset) in a fresh temporary directory.
std::string quantized_file(const std::string& hf_dir, const std::string& preset) {
    const auto dir = std::filesystem::temp_directory_path() /
                     ("ql-blocks-" + std::to_string(::getpid()) + "-" + preset);
    std::filesystem::create_directories(dir);
    const std::string path = (dir / (preset + ".gguf")).string();
    auto model = Model::open(hf_dir);
    QuantizeOptions o;
    o.output_path = path;
    o.force = true;
    o.progress = false;
    quantize_model(*model, preset_recipe(preset, *model, false), o);
    return path;
}

std::vector<int32_t> tokens_for(int64_t n, int64_t vocab) {
    std::vector<int32_t> t(static_cast<size_t>(n));
    uint64_t s = 99;
    for (auto& v : t) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        v = static_cast<int32_t>((s >> 33) % static_cast<uint64_t>(vocab));
    }
    return t;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    double m = 0;
    for (size_t i = 0; i < a.size(); ++i)
        m = std::max(m, std::fabs(static_cast<double>(a[i]) - b[i]));
    return m;
}

using test_support::mean_kld;

struct Case {
    std::string source, preset;
    Precision precision;
    bool ggml_numerics;
};

TEST(CudaBlocks, EngineHoldingBlocksMatchesDequantizedEngine) {
    SKIP_WITHOUT_GPU();
    const Case cases[] = {
        {kLlama, "Q4_K_M", Precision::F16, false},
        {kLlama, "Q2_K", Precision::F16, false},
        {kLlama, "IQ4_XS", Precision::BF16, false},
        {kLlama, "IQ3_S", Precision::F16, false},
        {kLlama, "Q4_K_M", Precision::F32, true},  // llama.cpp's numerics: F32 tiles
        {kQwenMoe, "Q4_K_M", Precision::F16, false},
        {kGptOssMxfp4, "", Precision::F16, false},  // the checkpoint's own MXFP4 experts
    };
    for (const Case& k : cases) {
        const std::string path = k.preset.empty() ? k.source : quantized_file(k.source, k.preset);
        SCOPED_TRACE(path);
        auto model = Model::open(path);
        const ModelConfig& c = model->config();
        const auto storage = quantized_storage_types(*model);
        ASSERT_FALSE(storage.empty());
        const int64_t B = 2, T = 64, V = c.vocab;
        const std::vector<int32_t> tokens = tokens_for(B * T, V);
        CudaEngineOptions plain_opt{
            .precision = k.precision, .max_tokens = 256, .ggml_numerics = k.ggml_numerics};
        CudaEngine plain(c, plain_opt);
        plain.load_model(*model);
        CudaEngineOptions blocks_opt = plain_opt;
        blocks_opt.quantized_storage = storage;
        CudaEngine blocks(c, blocks_opt);
        blocks.load_model(*model);
        ASSERT_TRUE(blocks.complete());

        // Memory: the file's bytes for every weight held in blocks (plus ≤ 255 bytes of
        // alignment each), the dequantized engine's for the rest.
        uint64_t file_bytes = 0;
        for (const auto& [name, type] : storage) file_bytes += model->get(name).nbytes();
        const int64_t saved = plain.weight_bytes() - blocks.weight_bytes();
        std::printf(
            "%s: weights %.2f MB in blocks vs %.2f MB dequantized (%zu tensors, %.2f MB "
            "in the file)\n",
            path.c_str(), blocks.weight_bytes() / 1e6, plain.weight_bytes() / 1e6, storage.size(),
            file_bytes / 1e6);
        EXPECT_GT(saved, 0);

        const std::vector<float> want = plain.forward_logits(tokens, B, T);
        const std::vector<float> got = blocks.forward_logits(tokens, B, T);
        ASSERT_EQ(want.size(), got.size());
        EXPECT_EQ(std::memcmp(want.data(), got.data(), want.size() * 4), 0)
            << "max |dlogit| " << max_abs_diff(want, got);

        // Tiles of a few rows: the same values, in GEMMs of other shapes (cuBLAS may sum in
        // another order).
        blocks_opt.dequant_tile_bytes = 8192;
        CudaEngine tiled(c, blocks_opt);
        tiled.load_model(*model);
        const std::vector<float> tiled_logits = tiled.forward_logits(tokens, B, T);
        const double tiled_kld = mean_kld(want, tiled_logits, V);
        std::printf("  tiled: max |dlogit| %.3g, mean KLD %.3g\n", max_abs_diff(want, tiled_logits),
                    tiled_kld);
        // Other GEMM shapes sum in another order; under llama.cpp's numerics each Q8 rounding
        // that flips moves an input by 1/127 of its block's largest (measured on an H100:
        // KLD 6e-7 F16, 4e-5 BF16, 7e-4 llama.cpp's numerics; a wrong row or tile is ≫ 1e-2).
        const double kld_bound = k.ggml_numerics                  ? 3e-3
                                 : k.precision == Precision::BF16 ? 2e-4
                                                                  : 1e-5;
        EXPECT_LE(std::fabs(tiled_kld), kld_bound);

        // Scoring on the GPU (eval without a base): the host's token_nll of the same logits.
        const int64_t t0 = 8, S = T - t0 - 1;
        const std::vector<float> nll = blocks.next_token_nll(tokens, B, T, t0, S);
        const std::vector<float> head = blocks.forward_logits(tokens, B, T, t0);
        double worst = 0;
        for (int64_t b = 0; b < B; ++b)
            for (int64_t j = 0; j < S; ++j) {
                const double host = token_nll(head.data() + (b * (T - t0) + j) * V, V,
                                              tokens[static_cast<size_t>(b * T + t0 + j + 1)]);
                worst = std::max(worst, std::fabs(host - nll[static_cast<size_t>(b * S + j)]));
            }
        std::printf("  next_token_nll vs host token_nll: max |d| %.3g\n", worst);
        EXPECT_LE(worst, 1e-5);

        // Values read back, and an override on a weight in blocks (the slot turns plain).
        const std::string w = c.n_layers > 0 ? "blk.0.attn_output.weight" : "output.weight";
        const std::vector<float> values = blocks.values(w);
        EXPECT_EQ(values, plain.values(w));
        blocks.set_override(w, values.data(), static_cast<int64_t>(values.size()),
                            model->get(w).type);
        const std::vector<float> overridden = blocks.forward_logits(tokens, B, T);
        EXPECT_LE(max_abs_diff(want, overridden), 1e-3);  // same values, one slot plain now
        blocks.clear_override(w);
        EXPECT_EQ(blocks.values(w), values);
    }
}

TEST(CudaBlocks, NextTokenNllMatchesHostScoringWithSoftcap) {
    SKIP_WITHOUT_GPU();
    auto model = Model::open(std::string(QL_SOURCE_DIR) + "/tests/fixtures/gemma2");
    const ModelConfig& c = model->config();
    ASSERT_GT(c.final_softcap, 0);
    const int64_t B = 3, T = 48, t0 = 5, S = T - t0 - 1, V = c.vocab;
    const std::vector<int32_t> tokens = tokens_for(B * T, V);
    CudaEngine e(c, {.precision = Precision::F16, .max_tokens = 256});
    e.load_model(*model);
    const std::vector<float> nll = e.next_token_nll(tokens, B, T, t0, S);
    const std::vector<float> head = e.forward_logits(tokens, B, T, t0);
    ASSERT_EQ(nll.size(), static_cast<size_t>(B * S));
    for (int64_t b = 0; b < B; ++b)
        for (int64_t j = 0; j < S; ++j)
            EXPECT_NEAR(nll[static_cast<size_t>(b * S + j)],
                        token_nll(head.data() + (b * (T - t0) + j) * V, V,
                                  tokens[static_cast<size_t>(b * T + t0 + j + 1)]),
                        1e-5);
}

TEST(CudaBlocks, StreamedBlocksGiveIdenticalLogits) {
    SKIP_WITHOUT_GPU();
    auto model = Model::open(quantized_file(kLlama, "Q4_K_M"));
    const ModelConfig& c = model->config();
    const int64_t B = 2, T = 64;
    const std::vector<int32_t> tokens = tokens_for(B * T, c.vocab);
    CudaEngineOptions o{.precision = Precision::F16, .max_tokens = 256};
    o.quantized_storage = quantized_storage_types(*model);
    CudaEngine resident(c, o);
    resident.load_model(*model);
    o.weight_budget_bytes = resident.weight_bytes() / 2;
    CudaEngine streamed(c, o);
    streamed.load_model(*model);
    ASSERT_TRUE(streamed.streaming());
    const std::vector<float> want = resident.forward_logits(tokens, B, T);
    EXPECT_EQ(streamed.forward_logits(tokens, B, T), want);
    EXPECT_EQ(streamed.forward_logits(tokens, B, T), want);  // after evictions
}

TEST(CudaBlocks, RefusesBlocksThatAreNotTheFiles) {
    SKIP_WITHOUT_GPU();
    auto model = Model::open(quantized_file(kLlama, "Q4_K_M"));
    CudaEngineOptions o{.precision = Precision::F16, .max_tokens = 64};
    o.quantized_storage = quantized_storage_types(*model);
    CudaEngine e(model->config(), o);
    const std::string name = "blk.1.ffn_down.weight";
    const TensorInfo& t = model->get(name);
    const std::span<const uint8_t> raw = model->raw(t);
    try {
        e.load_weight_blocks(name, t.type, raw.first(raw.size() - 1), "cut.gguf");
        FAIL() << "a short tensor was accepted";
    } catch (const Error& err) {
        EXPECT_NE(std::string(err.what()).find("cut.gguf: tensor 'blk.1.ffn_down.weight'"),
                  std::string::npos)
            << err.what();
    }
    std::vector<uint8_t> bad(raw.begin(), raw.end());
    const uint16_t nan_half = 0x7E00;  // the first block's d: Q4_K and Q6_K hold it first
    if (t.type == GgmlType::Q4_K) std::memcpy(bad.data(), &nan_half, 2);
    if (t.type == GgmlType::Q6_K)
        std::memcpy(bad.data() + ggml_type_info(t.type).bytes_per_block - 2, &nan_half, 2);
    EXPECT_THROW(e.load_weight_blocks(name, t.type, bad, "nan.gguf"), Error);
}

}  // namespace
}  // namespace quantlens::cuda
