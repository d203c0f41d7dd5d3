// The GPU tap reductions (engine/cuda/cuda_stats.h) against their CPU twins: channel moments
// and layer hidden statistics against ChannelMoments / ActivationCollector on the same random
// inputs, Hessians against HessianCollector on the same activations (random, and llama-8m's
// through the GPU engine), and calibrate --gpu against the CPU engine's calibration. Skips
// when no GPU is present.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <span>

#include "analysis/measure/activation_stats.h"
#include "analysis/measure/chunks.h"
#include "analysis/measure/hessian.h"
#include "analysis/studies/calibrate.h"
#include "core/error.h"
#include "core/half.h"
#include "engine/cuda/cuda_common.cuh"
#include "engine/cuda/cuda_engine.h"
#include "engine/cuda/cuda_stats.h"
#include "engine/engine.h"
#include "engine/tokenizer.h"
#include "model/model.h"
#include "support/family_reference.h"
#include "support/gpu_test.h"
#include "support/test_data.h"

namespace quantlens::cuda {
namespace {

// Sums in double over the same values in another order: the difference is bounded by
// (terms · 2^-53) · Σ|term|; 1e-12 of Σ|term| holds for the ≤ 10^3 terms here.
constexpr double kSumRelTol = 1e-12;
// A GPU Hessian is F32 products of one batch (≤ 2048 rows here) summed in F32, then in F64:
// at most rows · 2^-24 ≈ 1.2e-4 of sqrt(H_ii H_jj) (Cauchy–Schwarz), typically ~1e-6.
constexpr double kHessianRelTol = 1e-4;
// The GPU engine's activations are F16 (2^-11 relative per value) and its layers' sums are in
// another order than the CPU engine's: importances (mean x²) and Hessians of the two engines
// agree to about 1e-3.
constexpr double kEngineRelTol = 1e-3;
// Per-value bound for those comparisons: a value near the F16 resolution of its channel
// moves by more than the average.
constexpr double kEngineMaxRelTol = 2e-2;

const std::string kModel = test_support::kExampleLlama;
const std::string kText = std::string(QL_SOURCE_DIR) + "/examples/data/calib-sample.txt";

// Random activations [rows, cols]: channel j has mean 0.1·(j % 7) and scale 1 + (j % 5), with a
// few large outliers so the 6σ count is not zero.
std::vector<float> random_rows(int64_t rows, int64_t cols, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> g(0.0f, 1.0f);
    std::vector<float> x(static_cast<size_t>(rows * cols));
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < cols; ++j)
            x[static_cast<size_t>(r * cols + j)] =
                0.1f * static_cast<float>(j % 7) + static_cast<float>(1 + j % 5) * g(rng);
    for (int64_t k = 0; k < rows / 8; ++k) x[(k * 7919u) % x.size()] *= 40.0f;
    return x;
}

enum class Storage { F32, F16, BF16 };

// The values as the device holds them (rounded to the 16-bit type) and the device copy.
struct DeviceRows {
    std::vector<float> host;  // widened back: what the CPU twin sees
    DeviceBuffer dev;
    bool f32 = true;
};

DeviceRows upload(std::vector<float> x, Storage s) {
    DeviceRows d;
    d.f32 = s == Storage::F32;
    if (d.f32) {
        d.dev.resize(x.size() * 4);
        QL_CUDA(cudaMemcpy(d.dev.as(), x.data(), x.size() * 4, cudaMemcpyHostToDevice));
    } else {
        std::vector<uint16_t> bits(x.size());
        for (size_t i = 0; i < x.size(); ++i) {
            bits[i] = s == Storage::F16 ? f32_to_f16(x[i]) : f32_to_bf16(x[i]);
            x[i] = s == Storage::F16 ? f16_to_f32(bits[i]) : bf16_to_f32(bits[i]);
        }
        d.dev.resize(bits.size() * 2);
        QL_CUDA(cudaMemcpy(d.dev.as(), bits.data(), bits.size() * 2, cudaMemcpyHostToDevice));
    }
    d.host = std::move(x);
    return d;
}

void expect_moments_match(Storage storage) {
    const int64_t cols = 300;  // not a multiple of the 256-thread blocks
    const std::vector<std::string> names{"blk.0.attn_q.weight"};
    TapReducer gpu(storage == Storage::BF16 ? Precision::BF16 : Precision::F16);
    ChannelMoments cpu(cols);
    std::vector<double> abs_k[4];  // Σ|x|^k per channel, the scale of each sum's rounding
    for (auto& a : abs_k) a.assign(cols, 0.0);
    uint32_t seed = 1;
    for (const int64_t rows : {1, 77, 700, 64}) {
        const DeviceRows x = upload(random_rows(rows, cols, seed++), storage);
        gpu.add_moments(
            names[0], {ActivationTap::Kind::LinearInput, 0, &names, x.dev.as(), x.f32, rows, cols});
        cpu.add(x.host.data(), rows);
        for (int64_t i = 0; i < rows * cols; ++i) {
            const double v = std::fabs(static_cast<double>(x.host[static_cast<size_t>(i)]));
            for (int k = 0; k < 4; ++k)
                abs_k[k][static_cast<size_t>(i % cols)] += std::pow(v, k + 1);
        }
    }
    const ChannelSums g = gpu.moments(names[0]);
    ASSERT_EQ(g.n_cols, cols);
    EXPECT_EQ(g.n_rows, cpu.n_rows);
    EXPECT_GT(cpu.n_beyond, 0);
    EXPECT_EQ(g.n_beyond, cpu.n_beyond);
    double worst = 0;
    for (size_t j = 0; j < static_cast<size_t>(cols); ++j) {
        EXPECT_EQ(g.max_abs[j], cpu.max_abs[j]) << j;
        const double* gs[5] = {&g.s1[j], &g.s2[j], &g.s3[j], &g.s4[j], &g.sabs[j]};
        const double* cs[5] = {&cpu.s1[j], &cpu.s2[j], &cpu.s3[j], &cpu.s4[j], &cpu.sabs[j]};
        const double scale[5] = {abs_k[0][j], abs_k[1][j], abs_k[2][j], abs_k[3][j], abs_k[0][j]};
        for (int k = 0; k < 5; ++k) {
            const double d = std::fabs(*gs[k] - *cs[k]) / scale[k];
            worst = std::max(worst, d);
            EXPECT_LE(d, kSumRelTol) << "sum " << k << " channel " << j;
        }
    }
    std::printf("moments: %lld values beyond 6 sigma; worst sum difference %.3g of sum |x|^k\n",
                static_cast<long long>(cpu.n_beyond), worst);
}

TEST(CudaStats, MomentsMatchChannelMomentsF32) {
    SKIP_WITHOUT_GPU();
    expect_moments_match(Storage::F32);
}

TEST(CudaStats, MomentsMatchChannelMomentsF16) {
    SKIP_WITHOUT_GPU();
    expect_moments_match(Storage::F16);
}

TEST(CudaStats, MomentsMatchChannelMomentsBF16) {
    SKIP_WITHOUT_GPU();
    expect_moments_match(Storage::BF16);
}

TEST(CudaStats, HiddenStatsMatchActivationCollector) {
    SKIP_WITHOUT_GPU();
    const int64_t cols = 96;
    TapReducer gpu(Precision::F16);
    ActivationCollector cpu;
    uint32_t seed = 11;
    for (const int64_t rows : {5, 300, 40}) {
        std::vector<float> h = random_rows(rows, cols, seed++);
        // Ties: the largest |h| twice in this batch (the first occurrence counts), and the
        // last batch's maximum equal to the running one (the earlier channel stays).
        if (rows == 300) {
            h[1234] = -1e4f;
            h[2000] = 1e4f;
        }
        if (rows == 40) h[7] = 1e4f;
        const DeviceRows x = upload(h, Storage::F32);
        gpu.add_hidden(
            {ActivationTap::Kind::LayerOutput, 3, nullptr, x.dev.as(), true, rows, cols});
        cpu.on_event({HookEvent::Kind::LayerOutput, 3, nullptr, -1, x.host.data(), rows, cols});
    }
    ASSERT_EQ(gpu.hidden_layers(), std::vector<int>{3});
    const HiddenSums g = gpu.hidden(3);
    const LayerHiddenStats c = cpu.layer_stats().at(0);
    EXPECT_EQ(g.n_tokens, c.n_tokens);
    EXPECT_EQ(static_cast<double>(g.max_abs), c.max_abs);
    EXPECT_EQ(g.max_channel, 1234 % cols);
    EXPECT_EQ(g.max_channel, c.max_channel);
    EXPECT_NEAR(g.mean_abs(), c.mean_abs, kSumRelTol * c.mean_abs);
}

// Max |a − b| / sqrt(b_ii b_jj) over a symmetric n × n matrix (b's diagonal positive).
double hessian_difference(const std::vector<double>& a, const std::vector<double>& b, int64_t n) {
    double worst = 0;
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) {
            const auto ij = static_cast<size_t>(i * n + j);
            const double s =
                std::sqrt(b[static_cast<size_t>(i * n + i)] * b[static_cast<size_t>(j * n + j)]);
            worst = std::max(worst, std::fabs(a[ij] - b[ij]) / std::max(s, 1e-300));
        }
    return worst;
}

// The upper triangle mirrored, as HessianCollector::hessian returns it.
std::vector<double> mirrored(std::vector<double> h, int64_t n) {
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < i; ++j)
            h[static_cast<size_t>(i * n + j)] = h[static_cast<size_t>(j * n + i)];
    return h;
}

TEST(CudaStats, HessianMatchesHessianCollectorOnRandomRows) {
    SKIP_WITHOUT_GPU();
    const int64_t cols = 200;
    const std::string name = "blk.1.ffn_down.weight";
    for (const Storage s : {Storage::F32, Storage::F16}) {
        TapReducer gpu(Precision::F16);
        HessianCollector cpu;
        int64_t rows_total = 0;
        uint32_t seed = 21;
        for (const int64_t rows : {3, 512, 129}) {
            const DeviceRows x = upload(random_rows(rows, cols, seed++), s);
            const std::vector<std::string> names{name};
            gpu.add_hessian(
                name, {ActivationTap::Kind::LinearInput, 1, &names, x.dev.as(), x.f32, rows, cols});
            cpu.on_event({HookEvent::Kind::LinearInput, 1, &name, -1, x.host.data(), rows, cols});
            rows_total += rows;
        }
        int64_t tokens = 0;
        const std::vector<double> g = mirrored(gpu.hessian(name, &tokens), cols);
        EXPECT_EQ(tokens, rows_total);
        EXPECT_EQ(cpu.tokens(name), rows_total);
        const double d = hessian_difference(g, cpu.hessian(name), cols);
        std::printf("random Hessian (%s input): max difference %.3g of sqrt(H_ii H_jj)\n",
                    s == Storage::F32 ? "F32" : "F16", d);
        EXPECT_LE(d, kHessianRelTol);
        gpu.drop_hessians();
        EXPECT_TRUE(gpu.hessian_keys().empty());
    }
}

EvalChunks llama_chunks(const Model& model, int64_t n_ctx, int64_t n_chunks) {
    return load_eval_chunks(Tokenizer::load(model), kText, n_ctx, n_chunks);
}

// The GPU engine's own activations downloaded into HessianCollector: the reference twin of
// run_hessians_gpu (same inputs, CPU double sums).
HessianCollector downloaded_hessians(const Model& model, const EvalChunks& chunks, int64_t batch) {
    CudaEngineOptions o;
    o.precision = Precision::F16;
    o.max_tokens = batch * chunks.n_ctx;
    CudaEngine gpu(model.config(), o);
    gpu.load_model(model);
    HessianCollector col;
    std::vector<float> host;
    gpu.set_tap([&](const ActivationTap& t) {
        if (t.kind != ActivationTap::Kind::LinearInput) return;
        host.resize(static_cast<size_t>(t.rows * t.cols));
        gpu.download_activations(t, host.data());
        for (const std::string& name : *t.weights)
            col.on_event(
                {HookEvent::Kind::LinearInput, t.layer, &name, -1, host.data(), t.rows, t.cols});
    });
    TapForward forward(gpu);
    const int64_t T = chunks.n_ctx;
    for (int64_t c = 0; c < chunks.n_chunks; c += batch) {
        const int64_t B = std::min(batch, chunks.n_chunks - c);
        const auto* first = chunks.tokens.data() + c * T;
        forward.run(std::vector<int32_t>(first, first + B * T), B, T);
    }
    return col;
}

TEST(CudaStats, GpuHessiansMatchCpuTwinAndCpuEngineOnLlama8m) {
    SKIP_WITHOUT_GPU();
    const auto model = Model::open(kModel);
    const EvalChunks chunks = llama_chunks(*model, 512, 6);
    ASSERT_EQ(chunks.n_chunks, 6);
    HessianCollector gpu;
    run_hessians_gpu(*model, chunks, gpu, 4, "test");
    // Forced into many passes (room for one down-projection input): the same sums, bit for bit.
    HessianCollector split;
    run_hessians_gpu(*model, chunks, split, 4, "test", 768 * 768 * 8);
    const HessianCollector twin = downloaded_hessians(*model, chunks, 4);
    EngineOptions eo;
    eo.f16_weights = true;
    Engine engine(*model, eo);
    HessianCollector cpu;
    run_hessians(engine, chunks, cpu, 4);

    // q, k, v, o, gate, up, down per layer and the head.
    ASSERT_EQ(gpu.matrices().size(), static_cast<size_t>(7 * model->config().n_layers + 1));
    EXPECT_EQ(gpu.matrices(), cpu.matrices());
    EXPECT_EQ(gpu.matrices(), twin.matrices());
    EXPECT_EQ(gpu.matrices(), split.matrices());
    EXPECT_TRUE(gpu.has("output.weight"));
    double worst_twin = 0, worst_cpu = 0;
    std::string worst_name;
    for (const auto& [name, expert] : gpu.matrices()) {
        const int64_t n = gpu.n_cols(name);
        ASSERT_EQ(n, cpu.n_cols(name)) << name;
        EXPECT_EQ(gpu.tokens(name), 6 * 512) << name;
        EXPECT_EQ(gpu.tokens(name), cpu.tokens(name)) << name;
        const std::vector<double> h = gpu.hessian(name);
        EXPECT_EQ(h, split.hessian(name)) << name;
        const double dt = hessian_difference(h, twin.hessian(name), n);
        const double dc = hessian_difference(h, cpu.hessian(name), n);
        EXPECT_LE(dt, kHessianRelTol) << name;
        EXPECT_LE(dc, kEngineMaxRelTol) << name;
        worst_twin = std::max(worst_twin, dt);
        if (dc > worst_cpu) worst_cpu = dc, worst_name = name;
    }
    std::printf(
        "llama-8m Hessians: max difference %.3g (vs the same activations summed on the CPU), "
        "%.3g at %s (vs the CPU engine), of sqrt(H_ii H_jj)\n",
        worst_twin, worst_cpu, worst_name.c_str());
}

// Relative L2 distance ‖a − b‖ / ‖b‖ and the largest per-value relative difference.
std::pair<double, double> relative_difference(const std::vector<float>& a,
                                              const std::vector<float>& b) {
    double num = 0, den = 0, worst = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        const double d = static_cast<double>(a[i]) - b[i];
        num += d * d;
        den += static_cast<double>(b[i]) * b[i];
        if (b[i] != 0) worst = std::max(worst, std::fabs(d) / std::fabs(b[i]));
    }
    return {std::sqrt(num / std::max(den, 1e-300)), worst};
}

TEST(CudaStats, CalibrateGpuMatchesDownloadedTwinAndCpuEngine) {
    SKIP_WITHOUT_GPU();
    const auto model = Model::open(kModel);
    CalibrateOptions co;
    co.progress = false;
    co.max_chunks = 8;
    const CalibrationResult g = calibrate_text_gpu(*model, kText, co);

    // Twin: the same GPU activations downloaded into the CPU collector (the former path).
    const EvalChunks chunks = llama_chunks(*model, co.n_ctx, co.max_chunks);
    CudaEngineOptions o;
    o.precision = Precision::F16;
    o.max_tokens = co.batch * co.n_ctx;
    CudaEngine gpu(model->config(), o);
    ActivationCollector twin(model->config().n_experts);
    std::vector<float> host;
    gpu.set_tap([&](const ActivationTap& t) {
        host.resize(static_cast<size_t>(t.rows * t.cols));
        gpu.download_activations(t, host.data());
        if (t.kind == ActivationTap::Kind::LayerOutput) {
            twin.on_event(
                {HookEvent::Kind::LayerOutput, t.layer, nullptr, -1, host.data(), t.rows, t.cols});
            return;
        }
        const std::vector<std::string>& w = *t.weights;
        twin.on_shared_input(
            {HookEvent::Kind::LinearInput, t.layer, &w[0], -1, host.data(), t.rows, t.cols},
            std::span<const std::string>(w).subspan(1));
    });
    gpu.load_model(*model);
    for (int64_t c = 0; c < chunks.n_chunks; c += co.batch) {
        const int64_t B = std::min(co.batch, chunks.n_chunks - c);
        const auto* first = chunks.tokens.data() + c * co.n_ctx;
        gpu.run_layers(std::vector<int32_t>(first, first + B * co.n_ctx), B, co.n_ctx);
    }
    const std::vector<TensorActivationStats> ts = twin.tensor_stats();
    ASSERT_EQ(g.tensors.size(), ts.size());
    ASSERT_EQ(g.tensors.size(), static_cast<size_t>(7 * model->config().n_layers));
    for (size_t i = 0; i < ts.size(); ++i) {
        const TensorActivationStats &a = g.tensors[i], &b = ts[i];
        ASSERT_EQ(a.name, b.name);
        EXPECT_EQ(a.tokens, b.tokens) << a.name;
        EXPECT_EQ(a.max_abs, b.max_abs) << a.name;
        EXPECT_EQ(a.frac_beyond_6sigma, b.frac_beyond_6sigma) << a.name;
        EXPECT_EQ(a.outlier_channels, b.outlier_channels) << a.name;
        EXPECT_NEAR(a.variance, b.variance, 1e-10 * b.variance) << a.name;
        EXPECT_NEAR(a.excess_kurtosis, b.excess_kurtosis,
                    1e-9 * std::fabs(b.excess_kurtosis) + 1e-12)
            << a.name;
        // Importances are floats of Σx²/n: equal to the float rounding of sums that agree to
        // 1e-15.
        EXPECT_LE(relative_difference(a.importance, b.importance).second, 1e-6) << a.name;
    }
    const std::vector<LayerHiddenStats> tl = twin.layer_stats();
    ASSERT_EQ(g.layers.size(), tl.size());
    for (size_t i = 0; i < tl.size(); ++i) {
        EXPECT_EQ(g.layers[i].n_tokens, tl[i].n_tokens);
        EXPECT_EQ(g.layers[i].max_abs, tl[i].max_abs);
        EXPECT_EQ(g.layers[i].max_channel, tl[i].max_channel);
        EXPECT_NEAR(g.layers[i].mean_abs, tl[i].mean_abs, 1e-12 * tl[i].mean_abs);
    }

    // Against the CPU engine (F16 weights, f32 activations).
    EngineOptions eo;
    eo.f16_weights = true;
    Engine engine(*model, eo);
    const CalibrationResult c = calibrate_text(engine, kText, co);
    ASSERT_EQ(g.imatrix.size(), c.imatrix.size());
    double worst_l2 = 0, worst_value = 0;
    for (size_t i = 0; i < c.imatrix.size(); ++i) {
        ASSERT_EQ(g.imatrix[i].name, c.imatrix[i].name);
        EXPECT_EQ(g.imatrix[i].counts, c.imatrix[i].counts) << c.imatrix[i].name;
        const auto [l2, worst] = relative_difference(g.imatrix[i].values, c.imatrix[i].values);
        EXPECT_LE(l2, kEngineRelTol) << c.imatrix[i].name;
        EXPECT_LE(worst, kEngineMaxRelTol) << c.imatrix[i].name;
        worst_l2 = std::max(worst_l2, l2);
        worst_value = std::max(worst_value, worst);
    }
    for (size_t i = 0; i < c.layers.size(); ++i) {
        // (The channel of the maximum is held exactly against the twin above; between engines
        // two near-equal channels may trade places.)
        EXPECT_NEAR(g.layers[i].max_abs, c.layers[i].max_abs,
                    kEngineMaxRelTol * c.layers[i].max_abs)
            << i;
        EXPECT_NEAR(g.layers[i].mean_abs, c.layers[i].mean_abs,
                    kEngineRelTol * c.layers[i].mean_abs);
    }
    std::printf(
        "calibrate --gpu vs CPU engine on %lld tokens: imatrix relative L2 <= %.3g, worst value "
        "%.3g; GPU %.2f s, CPU %.2f s\n",
        static_cast<long long>(g.n_tokens), worst_l2, worst_value, g.seconds, c.seconds);
}

// calibrate --gpu on mixtures of experts (the Qwen3-MoE and GLM-4.5 fixtures): the router's
// input, each expert's routed rows and the shared expert's input are tapped, so the imatrix
// has every expert's column sums and token count, as the CPU engine's. Routing in F16 may send
// a token near a tie to another expert, so expert counts may move by a few tokens in a
// thousand; every other input matches as for a dense model.
TEST(CudaStats, CalibrateGpuCoversRoutedExperts) {
    SKIP_WITHOUT_GPU();
    // GLM: a dense layer, a shared expert; DeepSeek: MLA's per-head attn_k_b / attn_v_b too
    for (const char* name : {"qwen3moe", "glm4moe", "deepseek3-mla"}) {
        const auto model = Model::open(test_support::fixture_dir(name));
        const ModelConfig& mc = model->config();
        CalibrateOptions co;
        co.progress = false;
        co.max_chunks = 4;
        const CalibrationResult g = calibrate_text_gpu(*model, kText, co);
        EngineOptions eo;
        eo.f16_weights = true;
        Engine engine(*model, eo);
        const CalibrationResult c = calibrate_text(engine, kText, co);
        ASSERT_EQ(g.imatrix.size(), c.imatrix.size()) << name;
        int64_t experts_seen = 0, moved = 0;
        double worst_expert_l2 = 0;
        for (size_t i = 0; i < c.imatrix.size(); ++i) {
            const ImatrixEntry &a = g.imatrix[i], &b = c.imatrix[i];
            ASSERT_EQ(a.name, b.name);
            ASSERT_EQ(a.counts.size(), b.counts.size()) << a.name;
            const auto [l2, worst] = relative_difference(a.values, b.values);
            if (a.name.find("_exps.") == std::string::npos) {
                EXPECT_EQ(a.counts, b.counts) << a.name;
                EXPECT_LE(l2, kEngineRelTol) << a.name;
                continue;
            }
            ASSERT_EQ(static_cast<int64_t>(a.counts.size()), mc.n_experts) << a.name;
            int64_t total_a = 0, total_b = 0;
            for (size_t e = 0; e < a.counts.size(); ++e) {
                total_a += a.counts[e], total_b += b.counts[e];
                moved += std::abs(a.counts[e] - b.counts[e]);
                experts_seen += a.counts[e] > 0 ? 1 : 0;
            }
            EXPECT_EQ(total_a, total_b) << a.name;  // every token reaches k experts either way
            EXPECT_EQ(total_b, c.n_tokens * mc.n_experts_used) << a.name;
            EXPECT_LE(l2, 2e-2) << a.name;
            worst_expert_l2 = std::max(worst_expert_l2, l2);
        }
        const int64_t moe_layers = mc.n_layers - mc.n_dense_layers;
        const int64_t slots = c.n_tokens * mc.n_experts_used * 3 * moe_layers;
        std::printf(
            "calibrate --gpu on %s (%lld tokens): experts with rows %lld; routed rows moved "
            "%lld of %lld; expert imatrix relative L2 <= %.3g\n",
            name, static_cast<long long>(c.n_tokens), static_cast<long long>(experts_seen),
            static_cast<long long>(moved), static_cast<long long>(slots), worst_expert_l2);
        EXPECT_GT(experts_seen, moe_layers * 3);  // routing reaches more than one expert
        EXPECT_LE(moved, slots / 100);
    }
}

// GPTQ's Hessians on mixtures of experts (Qwen3-MoE; GLM-4.5: a dense layer and a shared
// expert; DeepSeek-V3: MLA's per-head attn_k_b / attn_v_b as stacked matrices too): as GPTQ
// collects them (experts left out) the GPU's matrices are the CPU engine's, same tokens, sums
// within the engine tolerance; with experts, each routed expert's H sums the rows routed to it,
// and the GPU's F16 routing may move a few tokens near a tie to another expert.
TEST(CudaStats, GpuHessiansCoverMixturesOfExperts) {
    SKIP_WITHOUT_GPU();
    for (const char* name : {"qwen3moe", "glm4moe", "deepseek3-mla"}) {
        const auto model = Model::open(test_support::fixture_dir(name));
        const ModelConfig& mc = model->config();
        const EvalChunks chunks = load_eval_chunks(Tokenizer::load(*model), kText, 256, 4);
        ASSERT_EQ(chunks.n_chunks, 4) << name;
        EngineOptions eo;
        eo.f16_weights = true;
        Engine engine(*model, eo);
        for (bool experts : {false, true}) {
            HessianCollector gpu(true, experts), cpu(true, experts);
            run_hessians_gpu(*model, chunks, gpu, 4, "test");
            run_hessians(engine, chunks, cpu, 4);
            int64_t stacked = 0, moved = 0, routed = 0;
            double worst = 0;
            for (const auto& [tensor, expert] : cpu.matrices()) {
                if (expert >= 0) {
                    ++stacked;
                    moved += std::abs(gpu.tokens(tensor, expert) - cpu.tokens(tensor, expert));
                    routed += cpu.tokens(tensor, expert);
                    continue;
                }
                ASSERT_TRUE(gpu.has(tensor)) << name << " " << tensor;
                EXPECT_EQ(gpu.tokens(tensor), cpu.tokens(tensor)) << name << " " << tensor;
                const double d = hessian_difference(gpu.hessian(tensor), cpu.hessian(tensor),
                                                    cpu.n_cols(tensor));
                EXPECT_LE(d, kEngineMaxRelTol) << name << " " << tensor;
                worst = std::max(worst, d);
            }
            std::printf(
                "%s Hessians on the GPU (experts %s): %zu matrices, %lld stacked; routed rows "
                "moved %lld of %lld; plain inputs within %.3g of sqrt(H_ii H_jj)\n",
                name, experts ? "on" : "off", cpu.matrices().size(),
                static_cast<long long>(stacked), static_cast<long long>(moved),
                static_cast<long long>(routed), worst);
            if (!experts) {
                EXPECT_EQ(gpu.matrices(), cpu.matrices()) << name;
                EXPECT_EQ(stacked, 0) << name;
            } else {
                EXPECT_GT(stacked, mc.n_experts) << name;  // more than one layer's experts
                EXPECT_LE(moved, routed / 100 + 2) << name;
            }
        }
    }
}

}  // namespace
}  // namespace quantlens::cuda
