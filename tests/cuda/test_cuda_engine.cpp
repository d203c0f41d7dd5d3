// The CUDA engine against the CPU engine on llama-8m (examples/models/llama-8m, in the repo so
// the GPU machine has it): logits, GPU fake quantization against the CPU reference path, and
// the sweep backend's ΔKLD against the CPU sweep backend. Skips when no GPU is present.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <span>
#include <vector>

#include "analysis/measure/weight_metrics.h"
#include "analysis/sweep/expert_units.h"
#include "analysis/sweep/sweep_cpu.h"
#include "core/error.h"
#include "core/half.h"
#include "engine/cuda/cuda_common.cuh"
#include "engine/cuda/cuda_engine.h"
#include "engine/cuda/cuda_kernels.h"
#include "engine/cuda/cuda_sweep.h"
#include "engine/cuda/deltanet.h"
#include "engine/cuda/fake_quant.h"
#include "engine/cuda/flash_attention.h"
#include "engine/engine.h"
#include "engine/kernels.h"
#include "engine/layers/gated_deltanet.h"
#include "model/model.h"
#include "quant/quant.h"
#include "support/family_reference.h"
#include "support/gpu_test.h"

namespace quantlens::cuda {
namespace {

// Acceptance (issue 11): logits within 2e-2 of the f32 CPU engine, mean KLD between the two
// distributions below 1e-4, per-tensor sweep ΔKLD within 5 % of the CPU sweep. Measured on an
// H100 (2026-11-23): F16 storage gives max |Δlogit| 0.012 and KLD 1.2e-6, BF16 0.09 and 6.2e-5
// (BF16 rounds every GEMM input — the activations too — to 8 significant bits), so the 2e-2
// logit bound is asserted for F16 and BF16 is held to the KLD bound and kBf16LogitTol.
constexpr double kLogitTol = 2e-2;
constexpr double kBf16LogitTol = 0.15;
constexpr double kKldTol = 1e-4;
constexpr double kSweepRelTol = 0.05;
// GPU weight-error sums vs the CPU's: the GPU values are rounded to the 16-bit storage type
// (BF16: 2^-9 relative per value), which moves an error of ≥ 5 % of the weights (Q2_K, Q3_K)
// by well under 3 %.
constexpr double kWeightErrorRelTol = 0.03;
// BF16 activations add noise of about 5e-5 nats to every ΔKLD; tensors with a ΔKLD near 1e-3
// then move by up to 8 % (measured), so BF16 sweeps are held to a looser bound.
constexpr double kBf16SweepRelTol = 0.15;

const std::string kModel = test_support::kExampleLlama;

// Pseudo-random tokens whose second half repeats the first, so the model (copying through
// induction) makes confident predictions there and quantization error shows in the KLD.
std::vector<int32_t> test_tokens(int64_t B, int64_t T, int64_t vocab) {
    std::vector<int32_t> t(static_cast<size_t>(B * T));
    uint64_t s = 12345;
    for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < T; ++i) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            const auto idx = static_cast<size_t>(b * T + i);
            t[idx] = i == 0       ? 0
                     : i >= T / 2 ? t[static_cast<size_t>(b * T + i - T / 2 + 1)]
                                  : static_cast<int32_t>((s >> 33) % static_cast<uint64_t>(vocab));
        }
    return t;
}

// Max |Δ| and mean KL(p_a ‖ p_b) over rows of V logits.
std::pair<double, double> compare_logits(const std::vector<float>& a, const std::vector<float>& b,
                                         int64_t V) {
    double max_abs = 0, kld = 0;
    const auto rows = static_cast<int64_t>(a.size()) / V;
    for (int64_t r = 0; r < rows; ++r) {
        const float* x = a.data() + r * V;
        const float* y = b.data() + r * V;
        double mx = -1e30, my = -1e30, sx = 0, sy = 0;
        for (int64_t v = 0; v < V; ++v) {
            max_abs = std::max(max_abs, std::fabs(static_cast<double>(x[v]) - y[v]));
            mx = std::max(mx, static_cast<double>(x[v]));
            my = std::max(my, static_cast<double>(y[v]));
        }
        for (int64_t v = 0; v < V; ++v) sx += std::exp(x[v] - mx), sy += std::exp(y[v] - my);
        for (int64_t v = 0; v < V; ++v) {
            const double lx = x[v] - mx - std::log(sx), ly = y[v] - my - std::log(sy);
            kld += std::exp(lx) * (lx - ly);
        }
    }
    return {max_abs, kld / static_cast<double>(rows)};
}

TEST(CudaEngine, LogitsMatchCpuEngine) {
    SKIP_WITHOUT_GPU();
    std::printf("device: %s\n", device_description().c_str());
    auto model = Model::open(kModel);
    Engine cpu(*model);
    const int64_t B = 2, T = 96, V = model->config().vocab;
    const std::vector<int32_t> tokens = test_tokens(B, T, V);
    const std::vector<float> ref = cpu.forward(tokens, B, T);
    for (Precision p : {Precision::BF16, Precision::F16}) {
        CudaEngine gpu(model->config(), {.precision = p, .max_tokens = 1024});
        gpu.load_model(*model);
        ASSERT_TRUE(gpu.complete());
        const std::vector<float> got = gpu.forward_logits(tokens, B, T);
        ASSERT_EQ(got.size(), ref.size());
        const auto [max_abs, kld] = compare_logits(ref, got, V);
        std::printf("%s: max |dlogit| %.3g, mean KLD %.3g\n", p == Precision::BF16 ? "BF16" : "F16",
                    max_abs, kld);
        EXPECT_LE(max_abs, p == Precision::F16 ? kLogitTol : kBf16LogitTol);
        EXPECT_LT(kld, kKldTol);
    }
}

TEST(CudaEngine, StreamedWeightsGiveIdenticalResults) {
    // A budget of one layer plus the head forces streaming on llama-8m: every pass copies
    // layers in and evicts others. Same arithmetic, so logits, overrides and fake quantization
    // must equal the resident engine's bit for bit.
    SKIP_WITHOUT_GPU();
    auto model = Model::open(kModel);
    const int64_t B = 2, T = 96, V = model->config().vocab;
    const std::vector<int32_t> tokens = test_tokens(B, T, V);
    CudaEngine resident(model->config(), {.precision = Precision::F16, .max_tokens = 1024});
    resident.load_model(*model);
    const int64_t budget = resident.weight_bytes() / 3;
    CudaEngine streamed(
        model->config(),
        {.precision = Precision::F16, .max_tokens = 1024, .weight_budget_bytes = budget});
    streamed.load_model(*model);
    ASSERT_FALSE(resident.streaming());
    ASSERT_TRUE(streamed.streaming());
    EXPECT_EQ(streamed.weight_bytes(), resident.weight_bytes());
    EXPECT_LE(streamed.resident_weight_bytes(), budget);

    auto same = [](const std::vector<float>& a, const std::vector<float>& b) {
        return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
    };
    EXPECT_TRUE(same(streamed.forward_logits(tokens, B, T), resident.forward_logits(tokens, B, T)));
    EXPECT_LE(streamed.resident_weight_bytes(), budget);
    // Values written while a slot was resident survive its eviction (written back to host).
    EXPECT_TRUE(
        same(streamed.original("blk.0.attn_q.weight"), resident.original("blk.0.attn_q.weight")));
    for (CudaEngine* e : {&resident, &streamed}) {
        ASSERT_TRUE(e->override_with_type("blk.2.ffn_down.weight", GgmlType::Q4_K));
        const std::vector<float> v = model->read_f32(model->get("blk.5.attn_v.weight"));
        std::vector<float> noisy(v);
        for (size_t i = 0; i < noisy.size(); i += 7) noisy[i] *= 1.5f;
        e->set_override("blk.5.attn_v.weight", noisy.data(), static_cast<int64_t>(noisy.size()));
    }
    EXPECT_TRUE(same(streamed.forward_logits(tokens, B, T), resident.forward_logits(tokens, B, T)));
    for (CudaEngine* e : {&resident, &streamed}) e->clear_overrides();
    EXPECT_TRUE(same(streamed.forward_logits(tokens, B, T), resident.forward_logits(tokens, B, T)));

    // A budget below one layer is refused with a message naming it.
    try {
        CudaEngine tiny(
            model->config(),
            {.precision = Precision::F16, .max_tokens = 256, .weight_budget_bytes = 1000});
        ADD_FAILURE() << "a 1000-byte budget was accepted";
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("budget of 1000 bytes"), std::string::npos)
            << e.what();
    }
}

// The types with a GPU fake-quant kernel (fake_quant.h).
const GgmlType kGpuFakeQuantTypes[] = {GgmlType::Q8_0,  GgmlType::Q6_K,   GgmlType::Q5_K,
                                       GgmlType::Q4_K,  GgmlType::IQ4_XS, GgmlType::Q3_K,
                                       GgmlType::IQ3_S, GgmlType::Q2_K};

// Fake-quantizes `name` on the GPU with every type of kGpuFakeQuantTypes and expects each value
// to equal the CPU path's, rounded to the storage type (the one rounding the GPU path adds).
// With `importance` (n_per_row per-column weights) both sides take the importance paths.
void expect_fake_quant_matches_cpu(CudaEngine& gpu, const std::string& name, int64_t n_rows,
                                   int64_t n_per_row, const std::vector<float>& importance = {}) {
    const bool bf16 = gpu.options().precision == Precision::BF16;
    const bool with_imp = !importance.empty();
    const std::vector<float> orig = gpu.original(name);
    for (GgmlType type : kGpuFakeQuantTypes) {
        const FakeQuantImportanceHost imp{importance, true};
        WeightErrorSums sums;
        ASSERT_TRUE(gpu.override_with_type(name, type, &sums, with_imp ? &imp : nullptr)) << name;
        const std::vector<float> got = gpu.values(name);
        std::vector<float> want(orig.size());
        fake_quantize(type, orig.data(), want.data(), n_rows, n_per_row,
                      with_imp ? importance.data() : nullptr);
        if (with_imp) {
            // The importance-weighted error against the CPU's over the same (storage-rounded)
            // values: the rounding moves Q8_0's small errors by up to 20 %, so it is compared
            // over what the GPU holds.
            std::vector<float> stored(want.size());
            for (size_t i = 0; i < want.size(); ++i)
                stored[i] = bf16 ? bf16_to_f32(f32_to_bf16(want[i])) : round_to_f16(want[i]);
            const WeightError wc =
                weight_error(orig.data(), stored.data(), n_rows, n_per_row, importance.data());
            const WeightError wg = WeightErrorAccumulator::from_sums(sums).result();
            ASSERT_TRUE(wg.has_imatrix);
            if (wc.imat_sq_err > 0) EXPECT_NEAR(wg.imat_sq_err / wc.imat_sq_err, 1.0, 1e-6) << name;
        }
        int64_t differ = 0;
        double max_rel = 0;
        for (size_t i = 0; i < want.size(); ++i) {
            const float w = bf16 ? bf16_to_f32(f32_to_bf16(want[i])) : round_to_f16(want[i]);
            if (w != got[i]) {
                ++differ;
                max_rel = std::max(max_rel, std::fabs(static_cast<double>(w) - got[i]) /
                                                std::max(1e-12, std::fabs(static_cast<double>(w))));
            }
        }
        std::printf(
            "%-4s %-4s %-22s %-6s %lld of %zu values differ from the CPU path (max rel "
            "%.3g)\n",
            bf16 ? "BF16" : "F16", with_imp ? "imat" : "", name.c_str(),
            ggml_type_display_name(type).c_str(), static_cast<long long>(differ), want.size(),
            max_rel);
        EXPECT_EQ(differ, 0) << name << " " << ggml_type_display_name(type);
        gpu.clear_override(name);
    }
    EXPECT_EQ(gpu.values(name), orig);  // clear_override restored the original
}

TEST(CudaEngine, FakeQuantMatchesCpuReference) {
    SKIP_WITHOUT_GPU();
    auto model = Model::open(kModel);
    // F16 storage of F16-rounded weights: the GPU kernels see exactly the CPU's input.
    CudaEngine gpu(model->config(), {.precision = Precision::F16, .max_tokens = 256});
    for (const auto& spec : gpu.weight_specs()) {
        std::vector<float> v = model->read_f32(model->get(spec.name));
        for (float& x : v) x = round_to_f16(x);
        gpu.load_weight(spec.name, v.data(), static_cast<int64_t>(v.size()));
    }
    for (const char* name : {"blk.0.attn_q.weight", "blk.3.ffn_down.weight", "output.weight"}) {
        const TensorInfo& t = model->get(name);
        expect_fake_quant_matches_cpu(gpu, name, t.n_rows(), t.n_per_row());
    }
}

// Importance like an imatrix's: mean squared activations spanning orders of magnitude, with
// some columns never activated (0), as rarely routed experts leave them.
std::vector<float> test_importance(int64_t n_per_row, uint32_t seed) {
    std::mt19937 rng(seed);
    std::lognormal_distribution<float> spread(0.0f, 2.0f);
    std::vector<float> imp(static_cast<size_t>(n_per_row));
    for (int64_t j = 0; j < n_per_row; ++j)
        imp[static_cast<size_t>(j)] = j % 37 == 5 ? 0.0f : spread(rng);
    return imp;
}

// The importance (imatrix) paths, bit for bit, on real weights (issue 21).
TEST(CudaEngine, FakeQuantWithImportanceMatchesCpuReference) {
    SKIP_WITHOUT_GPU();
    auto model = Model::open(kModel);
    for (Precision p : {Precision::F16, Precision::BF16}) {
        CudaEngine gpu(model->config(), {.precision = p, .max_tokens = 256});
        for (const auto& spec : gpu.weight_specs()) {
            std::vector<float> v = model->read_f32(model->get(spec.name));
            for (float& x : v) x = round_to_f16(x);
            gpu.load_weight(spec.name, v.data(), static_cast<int64_t>(v.size()));
        }
        for (const char* name : {"blk.0.attn_q.weight", "blk.3.ffn_down.weight", "output.weight"}) {
            const TensorInfo& t = model->get(name);
            expect_fake_quant_matches_cpu(gpu, name, t.n_rows(), t.n_per_row(),
                                          test_importance(t.n_per_row(), 7));
        }
    }
}

// Importance of the wrong length or with a negative value is refused by name.
TEST(CudaEngine, FakeQuantRefusesBadImportance) {
    SKIP_WITHOUT_GPU();
    auto model = Model::open(kModel);
    CudaEngine gpu(model->config(), {.precision = Precision::F16, .max_tokens = 256});
    const std::string name = "blk.0.attn_q.weight";
    std::vector<float> v = model->read_f32(model->get(name));
    gpu.load_weight(name, v.data(), static_cast<int64_t>(v.size()));
    std::vector<float> short_imp(100, 1.0f), negative(256, 1.0f);
    negative[3] = -1.0f;
    for (const auto* bad : {&short_imp, &negative}) {
        const FakeQuantImportanceHost imp{*bad, false};
        try {
            gpu.override_with_type(name, GgmlType::Q4_K, nullptr, &imp);
            ADD_FAILURE() << "accepted bad importance";
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
        }
    }
}

// Super-blocks (one per row of attn_q, 256 weights) built to reach the quantizers' corner
// cases: all-zero sub-blocks (IQ3_S's storage cursor skips them), all-zero rows, a single
// non-zero weight, sub-blocks 10^5 apart in magnitude, constant rows, F16 subnormals and
// values on the rounding ties of small grids. In both storage precisions.
TEST(CudaEngine, FakeQuantMatchesCpuOnCornerCases) {
    SKIP_WITHOUT_GPU();
    auto model = Model::open(kModel);
    const std::string name = "blk.0.attn_q.weight";
    const TensorInfo& t = model->get(name);
    const int64_t n_rows = t.n_rows(), n_per_row = t.n_per_row();
    ASSERT_EQ(n_per_row, 256);  // one super-block per row
    std::mt19937 rng(20261124);
    std::normal_distribution<float> normal(0.0f, 0.02f);
    std::vector<float> v(static_cast<size_t>(n_rows * n_per_row));
    for (int64_t r = 0; r < n_rows; ++r) {
        float* x = v.data() + r * n_per_row;
        for (int64_t i = 0; i < n_per_row; ++i) {
            const int64_t ib = i / 32;
            switch (r % 8) {
                case 0:  // one zero sub-block, moving along the rows
                    x[i] = ib == (r / 8) % 8 ? 0.0f : normal(rng);
                    break;
                case 1:  // all zero
                    x[i] = 0.0f;
                    break;
                case 2:  // one non-zero weight
                    x[i] = i == (r * 37) % n_per_row ? (r % 16 < 8 ? 0.05f : -0.05f) : 0.0f;
                    break;
                case 3:  // sub-block magnitudes from 1 down to 1e-4
                    x[i] = normal(rng) * 50.0f * std::pow(10.0f, -static_cast<float>(ib % 5));
                    break;
                case 4:  // constant magnitude, alternating signs in some rows
                    x[i] = 0.01f * static_cast<float>(1 + r % 3) * (r % 16 < 8 || i % 2 ? 1 : -1);
                    break;
                case 5:  // several zero sub-blocks, including the first and the last
                    x[i] = ib == 0 || ib == 3 || ib == 7 ? 0.0f : normal(rng);
                    break;
                case 6:  // F16 subnormals
                    x[i] = normal(rng) * 1e-4f;
                    break;
                default:  // multiples of 1/64 in [-1, 1]
                    x[i] = static_cast<float>(static_cast<int>(rng() % 129) - 64) / 64.0f;
            }
        }
    }
    for (Precision p : {Precision::F16, Precision::BF16}) {
        CudaEngine gpu(model->config(), {.precision = p, .max_tokens = 256});
        ASSERT_EQ(gpu.n_elements(name), static_cast<int64_t>(v.size()));
        gpu.load_weight(name, v.data(), static_cast<int64_t>(v.size()));
        expect_fake_quant_matches_cpu(gpu, name, n_rows, n_per_row);
        expect_fake_quant_matches_cpu(gpu, name, n_rows, n_per_row, test_importance(n_per_row, 11));
    }
}

// The sweep's weights are F16-rounded (SweepOptions::f16_weights), so F16 storage holds them
// exactly: the sweep's natural GPU precision. BF16 is checked with its looser bound.
struct SweepUnit {
    const char* name;
    int64_t layer;
    GgmlType type;
};
constexpr SweepUnit kLlama8mUnits[] = {{"blk.0.attn_v.weight", 0, GgmlType::Q2_K},
                                       {"blk.1.ffn_down.weight", 1, GgmlType::Q3_K},
                                       {"blk.4.attn_q.weight", 4, GgmlType::Q2_K},
                                       {"blk.6.ffn_up.weight", 6, GgmlType::Q3_K},
                                       {"output.weight", 8, GgmlType::Q2_K}};

// Each unit quantized on the CPU and installed on both backends; where the type has a GPU
// kernel, also fake-quantized on the GPU.
void check_sweep(const std::string& path, std::span<const SweepUnit> units, Precision precision,
                 double rel_tol) {
    auto model = Model::open(path);
    EngineOptions eo;
    eo.f16_weights = true;  // the sweep's default
    Engine cpu(*model, eo);
    EvalChunks chunks;
    chunks.n_chunks = 4;
    chunks.n_ctx = 128;
    chunks.first_scored = 64;
    chunks.tokens = test_tokens(chunks.n_chunks, chunks.n_ctx, model->config().vocab);
    auto cpu_backend = make_cpu_sweep_backend(cpu);
    cpu_backend->prepare(chunks);
    auto gpu_backend = make_cuda_sweep_backend(cpu, {.precision = precision, .max_tokens = 512});
    gpu_backend->prepare(chunks);

    const int64_t last_layer = model->config().n_layers - 1;
    for (const SweepUnit& u : units) {
        const TensorInfo& t = model->get(u.name);
        std::vector<float> q(cpu.original(u.name).size());
        fake_quantize(u.type, cpu.original(u.name).data(), q.data(), t.n_rows(), t.n_per_row());
        cpu.set_override(u.name, q);
        const PerturbedStats c = cpu_backend->evaluate(u.layer, false);
        cpu.clear_override(u.name);
        gpu_backend->set_override(u.name, q, u.type);
        const PerturbedStats g = gpu_backend->evaluate(u.layer, false);
        gpu_backend->clear_override(u.name);
        const double kc = c.kld_sum / c.n_scored, kg = g.kld_sum / g.n_scored;
        double kq = kc;  // the GPU fake quant's ΔKLD, where the type has a kernel
        const bool kernel = gpu_fake_quant_supported(u.type, t.n_per_row());
        if (kernel) {
            const auto sums = gpu_backend->set_fake_quant_override(u.name, u.type);
            ASSERT_TRUE(sums.has_value());
            const PerturbedStats gq = gpu_backend->evaluate(u.layer, false);
            gpu_backend->clear_override(u.name);
            kq = gq.kld_sum / gq.n_scored;
            // The GPU's weight-error reduction against the CPU's over the CPU's fake quant
            // (the GPU values are additionally rounded to the 16-bit storage type).
            const WeightError wc =
                weight_error(cpu.original(u.name).data(), q.data(), t.n_rows(), t.n_per_row());
            const WeightError wg = WeightErrorAccumulator::from_sums(*sums).result();
            EXPECT_NEAR(wg.rmse / wc.rmse, 1.0, kWeightErrorRelTol) << u.name;
            EXPECT_NEAR(wg.rel_frobenius / wc.rel_frobenius, 1.0, kWeightErrorRelTol) << u.name;
            EXPECT_NEAR(wg.cosine, wc.cosine, 1e-4) << u.name;
            EXPECT_NEAR(wg.max_abs / wc.max_abs, 1.0, kWeightErrorRelTol) << u.name;
        }

        std::printf(
            "%s %-22s %-5s dKLD cpu %.5g gpu %.5g (%+.2f%%) gpu-fake-quant %s; top1 "
            "%lld/%lld vs %lld\n",
            precision == Precision::F16    ? "F16 "
            : precision == Precision::BF16 ? "BF16"
                                           : "F32 ",
            u.name, ggml_type_display_name(u.type).c_str(), kc, kg, 100 * (kg / kc - 1),
            kernel ? fmt::format("{:.5g} ({:+.2f}%)", kq, 100 * (kq / kc - 1)).c_str()
                   : "(no kernel)",
            static_cast<long long>(c.top1_same), static_cast<long long>(c.n_scored),
            static_cast<long long>(g.top1_same));
        ASSERT_EQ(g.n_scored, c.n_scored);
        EXPECT_GT(kc, 1e-5) << u.name;  // the perturbation is visible at all
        EXPECT_NEAR(kg, kc, rel_tol * kc) << u.name;
        if (kernel) EXPECT_NEAR(kq, kc, rel_tol * kc) << u.name;  // else kq is kc itself
        EXPECT_NEAR(g.ref_nll_sum, c.ref_nll_sum, 1e-2 * c.ref_nll_sum);
        const auto last = static_cast<size_t>(last_layer);
        EXPECT_NEAR(g.layer_mse[last], c.layer_mse[last], 0.1 * c.layer_mse[last] + 1e-9) << u.name;
    }
    // No override: the GPU reproduces its own reference exactly.
    const PerturbedStats none = gpu_backend->evaluate(last_layer, false);
    EXPECT_LT(none.kld_sum / none.n_scored, 1e-9);
    EXPECT_EQ(none.top1_same, none.n_scored);
}

TEST(CudaSweep, DeltaKldMatchesCpuSweepF16) {
    SKIP_WITHOUT_GPU();
    check_sweep(kModel, kLlama8mUnits, Precision::F16, kSweepRelTol);
}

TEST(CudaSweep, DeltaKldMatchesCpuSweepBF16) {
    SKIP_WITHOUT_GPU();
    check_sweep(kModel, kLlama8mUnits, Precision::BF16, kBf16SweepRelTol);
}

// Issue 22's dense families on the GPU: the fixtures' transformers float64 log-probs
// (tests/fixtures, chunks of 512 tokens: past Gemma's 64-token windows and Phi-3's 64-token
// original context, so longrope's long factors; Gemma 2 against its eager reference, which
// applies the attention soft-capping sdpa ignores) under the bounds the CPU engine is held to —
// in F32 storage the CPU's own bounds, in F16 the F16 logit tolerance above — and the CPU
// engine's logits on two batched sequences of 48 random tokens (Phi-3's short factors): in
// F32 within the CPU bound, in F16 within the KLD bound (random tokens give logits further
// from zero than text: Phi-3's F16 max |Δlogit| measured 0.035 at a KLD of 2e-6).
TEST(CudaFamilies, MatchTransformersAndCpuEngine) {
    SKIP_WITHOUT_GPU();
    const std::pair<const char*, const char*> fixtures[] = {
        {"llama2-sp", ""},     {"mistral-metaspace", ""},
        {"gemma2", "-eager"},  {"gemma3", ""},
        {"phi3-longrope", ""}, {"qwen3moe", ""},
        {"gptoss", ""},        {"gptoss-mxfp4", ""},
        {"glm4moe", ""},       {"deepseek3-mla", ""},
        {"qwen3-next", ""},    {"qwen3.5", ""},
        {"qwen3.5-moe", ""},   {"gemma4", ""},
        {"gemma4-moe", ""}};
    for (const auto& [name, variant] : fixtures) {
        const std::string dir = test_support::fixture_dir(name);
        auto model = Model::open(dir);
        const int64_t V = model->config().vocab, B = 2, T = 48;
        const std::vector<int32_t> tokens = test_tokens(B, T, V);
        const std::vector<float> cpu = Engine(*model).forward(tokens, B, T);
        for (Precision p : {Precision::F32, Precision::F16}) {
            const bool f32 = p == Precision::F32;
            const char* label = f32 ? "F32" : "F16";
            CudaEngine gpu(model->config(), {.precision = p, .max_tokens = 512});
            gpu.load_model(*model);
            ASSERT_TRUE(gpu.complete()) << name;
            const auto r = test_support::compare_with_reference(
                [&](std::span<const int32_t> t, int64_t n) {
                    return gpu.forward_logits(std::vector<int32_t>(t.begin(), t.end()), 1, n);
                },
                V, dir, variant);
            const auto [max_abs, kld] = compare_logits(cpu, gpu.forward_logits(tokens, B, T), V);
            std::printf(
                "%-18s %s: vs transformers mean KLD %.3g, max |dlogit| %.3g; vs CPU "
                "engine max |dlogit| %.3g, KLD %.3g\n",
                name, label, r.kld_mean, r.max_abs_logit_diff, max_abs, kld);
            EXPECT_EQ(r.scored, 2 * 255) << name;
            double kld_bound = test_support::kFamilyMaxMeanKld;
            if (!f32 && r.kld_mean > kld_bound) {
                // Where 16-bit activations alone move the model further (Qwen3-Next's briefly
                // trained router has near-tied experts at two tokens of 510; llama.cpp's numerics
                // on the CPU engine, F16 weights, inputs and KV, measure the same 1.76e-4), the
                // GPU's F16 is held to that figure.
                const auto ggml = test_support::compare_with_reference(
                    *model, dir, variant, {.f16_weights = true, .ggml_numerics = true});
                std::printf("%-18s F16: llama.cpp numerics on the CPU, mean KLD %.3g\n", name,
                            ggml.kld_mean);
                kld_bound = std::max(kld_bound, 1.25 * ggml.kld_mean);
            }
            EXPECT_LE(r.kld_mean, kld_bound) << name << " " << label;
            EXPECT_LE(r.max_abs_logit_diff, f32 ? test_support::kFamilyMaxAbsLogitDiff : kLogitTol)
                << name << " " << label;
            if (f32) EXPECT_LE(max_abs, test_support::kFamilyMaxAbsLogitDiff) << name;
            EXPECT_LT(kld, f32 ? 1e-9 : kKldTol) << name << " " << label;
        }
    }
}

// Issue 24's gated delta rule on the GPU: the chunked kernel (the engine's path) and its
// step-by-step twin against the CPU's sequential reference (double), on the real head sizes
// of Qwen3-Next / Qwen3.5 (128) and the fixtures' (16), grouped and tiled value heads, a
// length that ends mid-chunk, and decays from mild to strong. Bound: 1e-5 of the largest
// output (issue 24: the chunked recurrence within 1e-5 relative of the sequential one).
TEST(CudaDeltaNet, ChunkedAndSequentialMatchCpuReference) {
    SKIP_WITHOUT_GPU();
    struct Case {
        int64_t dk, dv, nk, nv, T;
        bool tiled;
    };
    for (const Case cs : {Case{128, 128, 2, 4, 200, true}, Case{16, 16, 2, 4, 333, false},
                          Case{64, 128, 1, 3, 130, false}}) {
        const int64_t B = 2, N = B * cs.T, QK = cs.nk * cs.dk, VD = cs.nv * cs.dv;
        const int64_t CH = 2 * QK + VD;
        std::mt19937 rng(7);
        std::normal_distribution<float> normal(0.0f, 1.0f);
        std::uniform_real_distribution<float> unit(0.0f, 1.0f);
        std::vector<float> in(static_cast<size_t>(N * CH)), g(static_cast<size_t>(N * cs.nv)),
            beta(g.size());
        for (float& x : in) x = normal(rng);
        for (int64_t n = 0; n < N; ++n)  // unit-norm q and k, as the layer feeds them
            for (int64_t h = 0; h < 2 * cs.nk; ++h) {
                float* r = in.data() + n * CH + h * cs.dk;
                double ss = 0;
                for (int64_t d = 0; d < cs.dk; ++d) ss += double(r[d]) * r[d];
                for (int64_t d = 0; d < cs.dk; ++d) r[d] = static_cast<float>(r[d] / std::sqrt(ss));
            }
        for (size_t i = 0; i < g.size(); ++i) {
            g[i] = -std::exp(4.0f * unit(rng) - 5.0f);  // decays e^-0.007 .. e^-0.37 a step
            beta[i] = unit(rng);
        }
        // The CPU reference reads q, k, v as separate arrays.
        std::vector<float> q(static_cast<size_t>(N * QK)), k(q.size()),
            v(static_cast<size_t>(N * VD));
        for (int64_t n = 0; n < N; ++n) {
            std::copy_n(in.data() + n * CH, QK, q.data() + n * QK);
            std::copy_n(in.data() + n * CH + QK, QK, k.data() + n * QK);
            std::copy_n(in.data() + n * CH + 2 * QK, VD, v.data() + n * VD);
        }
        std::vector<float> ref(v.size());
        gated_delta_rule_ref(ref.data(), q.data(), k.data(), v.data(), g.data(), beta.data(),
                             {B, cs.T, cs.nk, cs.nv, cs.dk, cs.dv, cs.tiled});
        DeviceBuffer d_in(in.size() * 4), d_g(g.size() * 4), d_beta(g.size() * 4),
            d_out(v.size() * 4);
        QL_CUDA(cudaMemcpy(d_in.as(), in.data(), in.size() * 4, cudaMemcpyHostToDevice));
        QL_CUDA(cudaMemcpy(d_g.as(), g.data(), g.size() * 4, cudaMemcpyHostToDevice));
        QL_CUDA(cudaMemcpy(d_beta.as(), beta.data(), g.size() * 4, cudaMemcpyHostToDevice));
        const DeltaRuleArgs args{
            d_in.as<float>(),  CH, 0,    QK,    2 * QK, d_g.as<float>(), d_beta.as<float>(),
            d_out.as<float>(), B,  cs.T, cs.nk, cs.nv,  cs.dk,           cs.dv,
            cs.tiled};
        double scale = 0;
        for (float x : ref) scale = std::max(scale, std::fabs(double(x)));
        for (const bool chunked : {true, false}) {
            if (chunked)
                launch_gated_delta_rule_chunked(args);
            else
                launch_gated_delta_rule_sequential(args);
            std::vector<float> got(v.size());
            QL_CUDA(cudaMemcpy(got.data(), d_out.as(), got.size() * 4, cudaMemcpyDeviceToHost));
            double max_err = 0;
            for (size_t i = 0; i < got.size(); ++i)
                max_err = std::max(max_err, std::fabs(double(got[i]) - ref[i]));
            std::printf("delta rule dk %lld dv %lld T %lld %s: max |err| %.3g of max |out| %.3g\n",
                        static_cast<long long>(cs.dk), static_cast<long long>(cs.dv),
                        static_cast<long long>(cs.T), chunked ? "chunked   " : "sequential",
                        max_err, scale);
            EXPECT_GT(scale, 0.1);
            EXPECT_LE(max_err, 1e-5 * scale)
                << (chunked ? "chunked" : "sequential") << " dk " << cs.dk << " dv " << cs.dv;
        }
    }
}

// The hybrids' layers through the engine: the chunked recurrence (default) against the
// step-by-step twin on the Qwen3.5 fixture, and the sequence length past one chunk.
TEST(CudaDeltaNet, EngineChunkedMatchesSequential) {
    SKIP_WITHOUT_GPU();
    auto model = Model::open(test_support::fixture_dir("qwen3.5-moe"));
    const int64_t V = model->config().vocab, B = 2, T = 150;
    const std::vector<int32_t> tokens = test_tokens(B, T, V);
    std::vector<float> out[2];
    for (const bool sequential : {false, true}) {
        CudaEngine gpu(
            model->config(),
            {.precision = Precision::F32, .deltanet_sequential = sequential, .max_tokens = 512});
        gpu.load_model(*model);
        out[sequential] = gpu.forward_logits(tokens, B, T);
    }
    const auto [max_abs, kld] = compare_logits(out[1], out[0], V);
    std::printf("qwen3.5-moe chunked vs sequential: max |dlogit| %.3g, KLD %.3g\n", max_abs, kld);
    EXPECT_LT(max_abs, 1e-4);
    EXPECT_LT(kld, 1e-10);
}

// Qwen3-MoE with norm_topk_prob false keeps the top-k softmax probabilities as they are: the
// GPU equals the CPU engine, and the flag changes the model (or the test could not tell).
TEST(CudaFamilies, UnrenormalizedRoutingMatchesCpuEngine) {
    SKIP_WITHOUT_GPU();
    const std::string dir = test_support::edited_copy(
        "cuda-qwen3moe-raw", "qwen3moe", [](nlohmann::json& c) { c["norm_topk_prob"] = false; });
    auto raw = Model::open(dir);
    auto renormalized = Model::open(test_support::fixture_dir("qwen3moe"));
    ASSERT_FALSE(raw->config().moe_renormalize);
    const int64_t V = raw->config().vocab, B = 2, T = 48;
    const std::vector<int32_t> tokens = test_tokens(B, T, V);
    CudaEngine gpu(raw->config(), {.precision = Precision::F32, .max_tokens = 512});
    gpu.load_model(*raw);
    const std::vector<float> got = gpu.forward_logits(tokens, B, T);
    const auto [max_abs, kld] = compare_logits(Engine(*raw).forward(tokens, B, T), got, V);
    const auto [moved, flag_kld] =
        compare_logits(Engine(*renormalized).forward(tokens, B, T), got, V);
    std::printf(
        "norm_topk_prob false: vs CPU engine max |dlogit| %.3g, KLD %.3g; vs the "
        "renormalized model KLD %.3g\n",
        max_abs, kld, flag_kld);
    EXPECT_LE(max_abs, test_support::kFamilyMaxAbsLogitDiff);
    EXPECT_LT(kld, 1e-9);
    EXPECT_GT(flag_kld, test_support::kFeatureMattersKld);
}

// The GPU sweep over fused projections (Phi-3's attn_qkv and ffn_up), post-norms, soft-capping
// and sliding windows (Gemma 2): ΔKLD against the CPU sweep. Rows of 96 take the 32-blocks
// (installed from the CPU's quantization; the GPU kernels are the K-quants' and IQ types').
TEST(CudaFamilies, SweepMatchesCpuSweep) {
    SKIP_WITHOUT_GPU();
    constexpr SweepUnit kPhi3[] = {{"blk.0.attn_qkv.weight", 0, GgmlType::Q4_0},
                                   {"blk.1.ffn_up.weight", 1, GgmlType::Q4_0},
                                   {"blk.0.ffn_down.weight", 0, GgmlType::Q5_0},
                                   {"output.weight", 2, GgmlType::Q4_0}};
    constexpr SweepUnit kGemma2[] = {{"blk.0.attn_v.weight", 0, GgmlType::Q4_0},
                                     {"blk.1.attn_output.weight", 1, GgmlType::Q4_0},
                                     {"blk.2.ffn_up.weight", 2, GgmlType::Q4_1},
                                     {"blk.3.ffn_down.weight", 3, GgmlType::Q4_0}};
    check_sweep(test_support::fixture_dir("phi3-longrope"), kPhi3, Precision::F16, kSweepRelTol);
    check_sweep(test_support::fixture_dir("gemma2"), kGemma2, Precision::F16, kSweepRelTol);
    // gpt-oss: sinks, sliding/full layers, yarn, biased router and clamped biased experts. F32
    // storage, so the GPU routes every token as the CPU does (a 16-bit flip of one expert
    // choice would move a small ΔKLD by more than the tolerance).
    constexpr SweepUnit kGptOss[] = {{"blk.0.attn_q.weight", 0, GgmlType::Q4_0},
                                     {"blk.1.attn_output.weight", 1, GgmlType::Q4_0},
                                     {"blk.2.ffn_up_exps.weight", 2, GgmlType::Q4_0},
                                     {"blk.3.ffn_down_exps.weight", 3, GgmlType::Q4_0}};
    check_sweep(test_support::fixture_dir("gptoss"), kGptOss, Precision::F32, kSweepRelTol);
    // The Gated DeltaNet hybrids (issue 24): the fused linear-layer projections (ssm_ba in
    // Qwen3-Next, ssm_beta / ssm_alpha in Qwen3.5), ssm_out, the gated attention's query and the
    // sigmoid-gated shared expert. F32, as gpt-oss: routed experts.
    constexpr SweepUnit kQwen3Next[] = {{"blk.0.attn_qkv.weight", 0, GgmlType::Q4_0},
                                        {"blk.1.ssm_ba.weight", 1, GgmlType::Q4_0},
                                        {"blk.2.ssm_out.weight", 2, GgmlType::Q4_0},
                                        {"blk.3.attn_q.weight", 3, GgmlType::Q4_0},
                                        {"blk.1.ffn_up_shexp.weight", 1, GgmlType::Q4_0}};
    check_sweep(test_support::fixture_dir("qwen3-next"), kQwen3Next, Precision::F32, kSweepRelTol);
    constexpr SweepUnit kQwen35[] = {{"blk.0.attn_gate.weight", 0, GgmlType::Q4_0},
                                     {"blk.0.ssm_beta.weight", 0, GgmlType::Q4_0},
                                     {"blk.2.ssm_out.weight", 2, GgmlType::Q4_0},
                                     {"blk.3.attn_output.weight", 3, GgmlType::Q4_0}};
    check_sweep(test_support::fixture_dir("qwen3.5"), kQwen35, Precision::F16, kSweepRelTol);
    // Gemma 4 (issue 24): a K=V global layer's q, a layer whose K/V a shared layer reads (the
    // rows carry them), a KV-shared layer's q, o and double-wide MLP, the per-layer
    // embedding's gate (its projection's rows of 16 take no 32-block type), and the MoE
    // block's fused experts beside the MLP (F32: routed).
    constexpr SweepUnit kGemma4[] = {{"blk.2.attn_q.weight", 2, GgmlType::Q4_0},
                                     {"blk.3.attn_k.weight", 3, GgmlType::Q4_0},
                                     {"blk.4.attn_q.weight", 4, GgmlType::Q4_0},
                                     {"blk.1.inp_gate.weight", 1, GgmlType::Q4_0},
                                     {"blk.4.ffn_gate.weight", 4, GgmlType::Q4_0},
                                     {"blk.5.attn_output.weight", 5, GgmlType::Q4_0}};
    check_sweep(test_support::fixture_dir("gemma4"), kGemma4, Precision::F16, kSweepRelTol);
    constexpr SweepUnit kGemma4Moe[] = {{"blk.1.ffn_gate_up_exps.weight", 1, GgmlType::Q4_0},
                                        {"blk.0.ffn_gate_up_exps.weight", 0, GgmlType::Q4_0},
                                        {"blk.3.ffn_up.weight", 3, GgmlType::Q4_0},
                                        {"blk.1.attn_output.weight", 1, GgmlType::Q4_0}};
    check_sweep(test_support::fixture_dir("gemma4-moe"), kGemma4Moe, Precision::F32, kSweepRelTol);
}

// sweep --experts --gpu: the routing counts of the GPU's reference pass are the CPU's (F32
// storage; a token whose two best experts tie within rounding may go either way, so a few
// slots in a thousand may move), for softmax routing with renormalization (Qwen3-MoE) and
// gpt-oss's biased router, and GLM-4.5's and DeepSeek-V3's grouped sigmoid routing after a
// dense layer (DeepSeek's behind MLA).
TEST(CudaSweep, RoutingCountsMatchCpuSweep) {
    SKIP_WITHOUT_GPU();
    for (const char* name : {"qwen3moe", "gptoss", "glm4moe", "deepseek3-mla"}) {
        auto model = Model::open(test_support::fixture_dir(name));
        Engine cpu(*model);
        EvalChunks chunks;
        chunks.n_chunks = 4;
        chunks.n_ctx = 128;
        chunks.first_scored = 64;
        chunks.tokens = test_tokens(chunks.n_chunks, chunks.n_ctx, model->config().vocab);
        auto count = [&](SweepBackend& backend) {
            RoutingCounter counter(model->config());
            counter.attach(backend);
            backend.prepare(chunks);
            counter.detach(backend);
            return counter;
        };
        auto cpu_backend = make_cpu_sweep_backend(cpu);
        auto gpu_backend = make_cuda_sweep_backend(cpu, {.precision = Precision::F32});
        const RoutingCounter c = count(*cpu_backend), g = count(*gpu_backend);
        int64_t moved = 0, slots = 0;
        const ModelConfig& mc = model->config();
        for (int l = 0; l < static_cast<int>(mc.n_layers); ++l) {
            const int64_t routed = mc.is_moe_layer(l) ? chunks.n_chunks * chunks.n_ctx : 0;
            EXPECT_EQ(g.tokens(l), routed) << name << " layer " << l;
            EXPECT_EQ(g.tokens(l), c.tokens(l)) << name << " layer " << l;
            for (size_t e = 0; e < c.counts()[l].size(); ++e) {
                moved += std::abs(g.counts()[l][e] - c.counts()[l][e]);
                slots += c.counts()[l][e];
            }
        }
        std::printf("%s: routing counts GPU vs CPU, %lld of %lld slots moved\n", name,
                    static_cast<long long>(moved), static_cast<long long>(slots));
        EXPECT_EQ(slots, (mc.n_layers - mc.n_dense_layers) * chunks.n_chunks * chunks.n_ctx *
                             mc.n_experts_used);
        EXPECT_LE(moved, slots / 200) << name;
    }
}

// llama.cpp's matmul-input rounding on the GPU (issue 21): bit for bit the CPU's
// round_activations, including the cases its tie rules decide — halves (nearest-even for Q8_K,
// away from zero for Q8_0), the first of two maxima of equal magnitude and opposite sign,
// all-zero blocks, and a partial tail block the CPU leaves as it is.
TEST(CudaEngine, ActivationRoundingMatchesCpuBitForBit) {
    SKIP_WITHOUT_GPU();
    const int64_t N = 9, C = 256 * 3 + 32 * 2 + 7;  // Q8_K: 3 blocks + a tail; Q8_0: 25 + tail
    std::mt19937 rng(7);
    std::normal_distribution<float> g(0.0f, 1.0f);
    std::vector<float> x(static_cast<size_t>(N * C));
    for (float& v : x) v = g(rng) * std::exp(g(rng));
    float* r1 = x.data() + C;
    std::fill(r1, r1 + 256, 0.0f);  // an all-zero Q8_K block
    float* r2 = x.data() + 2 * C;   // max −2.54 first, then +2.54: the first one sets the sign
    r2[3] = -2.54f, r2[200] = 2.54f;
    float* r3 = x.data() + 3 * C;  // exact halves of the Q8_K grid (max 127 → iscale −1)
    r3[0] = 127.0f;
    for (int i = 1; i < 256; ++i) r3[i] = static_cast<float>(i % 50) - 24.5f;
    float* r4 = x.data() + 4 * C;  // Q8_0 halves: amax 127 in a block of 32
    r4[0] = -127.0f;
    for (int i = 1; i < 32; ++i) r4[i] = static_cast<float>(i) + 0.5f;
    const std::pair<ActRounding, ActRound> kinds[] = {{ActRounding::F16, ActRound::F16},
                                                      {ActRounding::BF16, ActRound::BF16},
                                                      {ActRounding::Q8_0, ActRound::Q8_0},
                                                      {ActRounding::Q8_K, ActRound::Q8_K}};
    for (const auto& [cpu_kind, gpu_kind] : kinds) {
        std::vector<float> want = x;
        round_activations(want.data(), N, C, cpu_kind);
        DeviceBuffer d(x.size() * 4);
        QL_CUDA(cudaMemcpy(d.as(), x.data(), x.size() * 4, cudaMemcpyHostToDevice));
        launch_round_activations(d.as<float>(), N, C, gpu_kind);
        std::vector<float> got(x.size());
        QL_CUDA(cudaMemcpy(got.data(), d.as(), got.size() * 4, cudaMemcpyDeviceToHost));
        int64_t differ = 0;
        for (size_t i = 0; i < got.size(); ++i) differ += std::memcmp(&got[i], &want[i], 4) != 0;
        EXPECT_EQ(differ, 0) << "rounding kind " << static_cast<int>(gpu_kind);
        EXPECT_NE(std::memcmp(got.data(), x.data(), 4 * x.size()), 0);  // it did round
    }
}

// The GPU engine with llama.cpp's numerics (F32 storage) against the CPU engine with them, on
// F16-rounded weights with overrides of three types in one layer — q as Q4_K and k as Q8_0
// share the fused q|k|v GEMM but need different input roundings (Q8_K, Q8_0).
// Measured on an H100 (2026-12-06): max |Δlogit| 0.069 and KLD 3.1e-5 between the engines,
// against 0.143 and 1.2e-4 for the same GPU engine without the rounding: the rounding brings
// them 4× closer but not to summation-order level. The rounding kernels themselves are bit-exact
// (ActivationRoundingMatchesCpuBitForBit); what remains is not yet explained (issue 21), so the
// bounds hold today's agreement and fail if it gets worse or the rounding stops working.
TEST(CudaEngine, GgmlNumericsMatchCpuEngine) {
    SKIP_WITHOUT_GPU();
    auto model = Model::open(kModel);
    const int64_t B = 2, T = 96, V = model->config().vocab;
    const std::vector<int32_t> tokens = test_tokens(B, T, V);
    Engine cpu(*model, {.f16_weights = true, .ggml_numerics = true});
    const std::pair<const char*, GgmlType> perturb[] = {{"blk.1.attn_q.weight", GgmlType::Q4_K},
                                                        {"blk.1.attn_k.weight", GgmlType::Q8_0},
                                                        {"blk.1.ffn_down.weight", GgmlType::IQ4_XS},
                                                        {"output.weight", GgmlType::Q6_K}};
    CudaEngine gpu(model->config(),
                   {.precision = Precision::F32, .max_tokens = 1024, .ggml_numerics = true});
    gpu.load_model(*model, /*round_f16=*/true);
    CudaEngine plain(model->config(), {.precision = Precision::F32, .max_tokens = 1024});
    plain.load_model(*model, /*round_f16=*/true);
    for (const auto& [name, type] : perturb) {
        if (!model->find(name)) continue;  // tied output
        cpu.override_with_type(name, type);
        ASSERT_TRUE(gpu.override_with_type(name, type)) << name;
        ASSERT_TRUE(plain.override_with_type(name, type)) << name;
    }
    const std::vector<float> ref = cpu.forward(tokens, B, T);
    const auto [max_abs, kld] = compare_logits(ref, gpu.forward_logits(tokens, B, T), V);
    const auto [plain_abs, plain_kld] = compare_logits(ref, plain.forward_logits(tokens, B, T), V);
    std::printf(
        "ggml numerics: GPU vs CPU max |dlogit| %.3g, KLD %.3g; without the rounding "
        "%.3g, %.3g\n",
        max_abs, kld, plain_abs, plain_kld);
    EXPECT_LE(max_abs, 0.1);
    EXPECT_LT(kld, 5e-5);
    EXPECT_GT(plain_kld, 3 * kld);  // the rounding is what brings the two together
}

}  // namespace
}  // namespace quantlens::cuda

namespace quantlens::cuda {
namespace {

// The flash-attention kernel against a double-precision host reference, at head_dim 64 and 128,
// with T not a multiple of the 64-row tiles and grouped KV heads. Its probabilities are rounded
// to F16 before P·V (as the materialized path's are), so outputs of magnitude ≤ 1 differ from
// exact by ~1e-3 at most.
// A base model's F16 weights under llama.cpp's numerics multiply on tensor cores from a 16-bit
// copy: the products are exact either way, so only the summation order may differ from the F32
// GEMMs. An override in a slot takes that slot back to F32 GEMMs; clearing it brings the copy
// back, still holding the original values.
TEST(CudaEngine, HalfGemmForF16WeightsMatchesF32Gemm) {
    SKIP_WITHOUT_GPU();
    auto model = Model::open(kModel);
    const int64_t B = 2, T = 96, V = model->config().vocab;
    const std::vector<int32_t> tokens = test_tokens(B, T, V);
    CudaEngineOptions o{.precision = Precision::F32, .max_tokens = 1024, .ggml_numerics = true};
    o.half_gemm_for_16bit_weights = false;
    CudaEngine f32(model->config(), o);
    f32.load_model(*model, /*round_f16=*/true);
    o.half_gemm_for_16bit_weights = true;
    CudaEngine half(model->config(), o);
    half.load_model(*model, /*round_f16=*/true);
    const std::vector<float> ref = f32.forward_logits(tokens, B, T);
    auto [max_abs, kld] = compare_logits(ref, half.forward_logits(tokens, B, T), V);
    std::printf("16-bit copy vs F32 GEMMs: max |dlogit| %.3g, KLD %.3g\n", max_abs, kld);
    EXPECT_LE(max_abs, 0.03);  // H100: 0.011, KLD 8.8e-7 (GPU vs CPU engine: 0.073, 3.9e-5)
    EXPECT_LT(kld, 5e-6);
    EXPECT_GT(max_abs, 0.0);  // the copy was used (F32 GEMMs would agree bit for bit)

    const std::string name = "blk.1.attn_q.weight";
    ASSERT_TRUE(f32.override_with_type(name, GgmlType::Q2_K));
    ASSERT_TRUE(half.override_with_type(name, GgmlType::Q2_K));
    const std::vector<float> ref_q = f32.forward_logits(tokens, B, T);
    std::tie(max_abs, kld) = compare_logits(ref_q, half.forward_logits(tokens, B, T), V);
    EXPECT_LE(max_abs, 0.03);
    EXPECT_GT(compare_logits(ref, ref_q, V).second, 10 * kld);  // the override took effect
    f32.clear_override(name);
    half.clear_override(name);
    std::tie(max_abs, kld) = compare_logits(ref, half.forward_logits(tokens, B, T), V);
    EXPECT_LE(max_abs, 0.03);
    EXPECT_LT(kld, 5e-6);
}

// The sweep's scoring reads each row once (running maximum, KLD as Σ p_ref·(ref − z) + lse·Σ
// p_ref); checked against a double-precision two-pass reference on rows with a spread like an LM's.
TEST(CudaKernels, ScoreRowsMatchDoubleReference) {
    SKIP_WITHOUT_GPU();
    const int64_t B = 2, S = 3, R = 4, V = 50'000;  // R: head rows per sequence, S of them scored
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.0f, 3.0f);
    std::vector<float> logits(static_cast<size_t>(B * R * V)), ref(static_cast<size_t>(B * S * V));
    for (float& x : logits) x = nd(rng);
    std::vector<int32_t> ref_top1(static_cast<size_t>(B * S)), next(static_cast<size_t>(B * S));
    std::vector<double> ref_lse(static_cast<size_t>(B * S));
    auto lse_of = [&](const float* z) {
        double mx = -INFINITY, sum = 0;
        for (int64_t v = 0; v < V; ++v) mx = std::max(mx, static_cast<double>(z[v]));
        for (int64_t v = 0; v < V; ++v) sum += std::exp(z[v] - mx);
        return mx + std::log(sum);
    };
    for (int64_t r = 0; r < B * S; ++r) {  // the reference: the logits moved a little
        const float* z = logits.data() + ((r / S) * R + r % S) * V;
        std::vector<float> zr(z, z + V);
        for (float& x : zr) x += 0.3f * nd(rng);
        zr[static_cast<size_t>(r * 11)] = 40.0f;  // a confident top-1
        const double lse = lse_of(zr.data());
        ref_lse[static_cast<size_t>(r)] = lse;
        for (int64_t v = 0; v < V; ++v)
            ref[static_cast<size_t>(r * V + v)] = static_cast<float>(zr[v] - lse);
        ref_top1[static_cast<size_t>(r)] = static_cast<int32_t>(r * 11);
        next[static_cast<size_t>(r)] = static_cast<int32_t>(r * 5 + 1);
    }
    logits[static_cast<size_t>(((1 % S) + 0) * V + 11)] = 45.0f;  // row 1 keeps the same top-1
    DeviceBuffer d_logits(logits.size() * 4), d_ref(ref.size() * 4), d_top(ref_top1.size() * 4),
        d_next(next.size() * 4), d_out(static_cast<size_t>(B * S) * sizeof(RowStats)),
        d_lse(ref_lse.size() * 8);
    QL_CUDA(cudaMemcpy(d_lse.as(), ref_lse.data(), ref_lse.size() * 8, cudaMemcpyHostToDevice));
    QL_CUDA(cudaMemcpy(d_logits.as(), logits.data(), logits.size() * 4, cudaMemcpyHostToDevice));
    QL_CUDA(cudaMemcpy(d_ref.as(), ref.data(), ref.size() * 4, cudaMemcpyHostToDevice));
    QL_CUDA(cudaMemcpy(d_top.as(), ref_top1.data(), ref_top1.size() * 4, cudaMemcpyHostToDevice));
    QL_CUDA(cudaMemcpy(d_next.as(), next.data(), next.size() * 4, cudaMemcpyHostToDevice));
    launch_score_rows(d_logits.as<float>(), B, S, R, V, d_ref.as<float>(), d_lse.as<double>(),
                      d_top.as<int32_t>(), d_next.as<int32_t>(), 0, d_out.as<RowStats>());
    std::vector<RowStats> got(static_cast<size_t>(B * S));
    QL_CUDA(
        cudaMemcpy(got.data(), d_out.as(), got.size() * sizeof(RowStats), cudaMemcpyDeviceToHost));
    int same_rows = 0;
    for (int64_t r = 0; r < B * S; ++r) {
        const float* z = logits.data() + ((r / S) * R + r % S) * V;
        const float* rl = ref.data() + r * V;
        const double lse = lse_of(z);
        double kld = 0;
        int64_t top = 0;
        for (int64_t v = 0; v < V; ++v) {
            kld += std::exp(static_cast<double>(rl[v])) * (rl[v] - (z[v] - lse));
            if (z[v] > z[top]) top = v;
        }
        const RowStats& g = got[static_cast<size_t>(r)];
        EXPECT_NEAR(g.kld, kld, 1e-5 * kld + 1e-7) << "row " << r;
        EXPECT_NEAR(g.nll, lse - z[next[static_cast<size_t>(r)]], 1e-4) << "row " << r;
        EXPECT_NEAR(g.ref_nll, -rl[next[static_cast<size_t>(r)]], 1e-6) << "row " << r;
        EXPECT_EQ(g.same, top == ref_top1[static_cast<size_t>(r)] ? 1 : 0) << "row " << r;
        same_rows += g.same;
    }
    EXPECT_GE(same_rows, 1);  // both outcomes of the top-1 comparison are exercised
    EXPECT_LT(same_rows, B * S);

    // The reference kernel on these logits, then scoring the same logits: KLD exactly 0.
    launch_reference_rows(d_logits.as<float>(), B, S, R, V, d_ref.as<float>(), d_lse.as<double>(),
                          d_top.as<int32_t>(), 0);
    launch_score_rows(d_logits.as<float>(), B, S, R, V, d_ref.as<float>(), d_lse.as<double>(),
                      d_top.as<int32_t>(), d_next.as<int32_t>(), 0, d_out.as<RowStats>());
    QL_CUDA(
        cudaMemcpy(got.data(), d_out.as(), got.size() * sizeof(RowStats), cudaMemcpyDeviceToHost));
    for (const RowStats& g : got) {
        EXPECT_EQ(g.kld, 0.0);
        EXPECT_EQ(g.same, 1);
        EXPECT_EQ(g.nll, g.ref_nll);
    }
}

// SwiGLU takes 16-byte packs where the width and pointers allow it and single values otherwise;
// both give the same bits, and match the host formula to an ulp or two of expf.
TEST(CudaKernels, SwigluPackedMatchesSingleValuesAndHost) {
    SKIP_WITHOUT_GPU();
    const int64_t N = 5, F = 4096 + 8;
    std::mt19937 rng(3);
    std::normal_distribution<float> nd(0.0f, 4.0f);
    std::vector<uint16_t> gu(static_cast<size_t>(N * 2 * F) + 8);
    for (auto& x : gu) x = f32_to_f16(nd(rng));
    DeviceBuffer d_gu(gu.size() * 2), d_out(static_cast<size_t>(N * F) * 2 + 16);
    QL_CUDA(cudaMemcpy(d_gu.as(), gu.data(), gu.size() * 2, cudaMemcpyHostToDevice));
    std::vector<uint16_t> packed(static_cast<size_t>(N * F)), single(packed.size());
    launch_swiglu(d_out.as(), d_gu.as(), Dtype::F16, N, F);  // aligned: packs
    QL_CUDA(cudaMemcpy(packed.data(), d_out.as(), packed.size() * 2, cudaMemcpyDeviceToHost));
    // One element in: misaligned input and output, so single values.
    launch_swiglu(d_out.as<uint16_t>() + 1, d_gu.as<uint16_t>() + 1, Dtype::F16, N, F);
    QL_CUDA(cudaMemcpy(single.data(), d_out.as<uint16_t>() + 1, single.size() * 2,
                       cudaMemcpyDeviceToHost));
    int64_t off_by_more = 0;
    for (int64_t n = 0; n < N; ++n)
        for (int64_t f = 0; f < F; ++f) {
            const float g = f16_to_f32(gu[static_cast<size_t>(n * 2 * F + f)]);
            const float u = f16_to_f32(gu[static_cast<size_t>(n * 2 * F + F + f)]);
            const float want = g / (1.0f + std::exp(-g)) * u;
            const float got = f16_to_f32(packed[static_cast<size_t>(n * F + f)]);
            off_by_more += std::fabs(got - want) > 1e-3f * std::fabs(want) + 1e-6f;
        }
    EXPECT_EQ(off_by_more, 0);
    // The shifted launch read gu from element 1: compare it with a packed launch of that data.
    std::vector<uint16_t> shifted(gu.begin() + 1, gu.begin() + 1 + N * 2 * F);
    QL_CUDA(cudaMemcpy(d_gu.as(), shifted.data(), shifted.size() * 2, cudaMemcpyHostToDevice));
    launch_swiglu(d_out.as(), d_gu.as(), Dtype::F16, N, F);
    QL_CUDA(cudaMemcpy(packed.data(), d_out.as(), packed.size() * 2, cudaMemcpyDeviceToHost));
    EXPECT_EQ(packed, single);
}

TEST(FlashAttention, MatchesDoubleReference) {
    SKIP_WITHOUT_GPU();
    for (const int64_t D : {64, 128}) {
        ASSERT_TRUE(flash_attention_supports(Dtype::F16, D));
        const int64_t B = 2, T = 200, H = 8, KV = 2, G = H / KV;
        std::mt19937 rng(static_cast<uint32_t>(D));
        std::normal_distribution<float> nd(0.0f, 1.0f);
        auto make = [&](int64_t n, float sigma) {
            std::vector<uint16_t> v(static_cast<size_t>(n));
            for (auto& x : v) x = f32_to_f16(nd(rng) * sigma);
            return v;
        };
        // Score spread like a trained model's (a few nats): q·k/√D with σ_q σ_k = 2.
        const auto q = make(B * T * H * D, 2.0f), k = make(B * T * KV * D, 1.0f),
                   v = make(B * T * KV * D, 1.0f);
        DeviceBuffer dq(q.size() * 2), dk(k.size() * 2), dv(v.size() * 2), dout(q.size() * 2);
        QL_CUDA(cudaMemcpy(dq.as(), q.data(), q.size() * 2, cudaMemcpyHostToDevice));
        QL_CUDA(cudaMemcpy(dk.as(), k.data(), k.size() * 2, cudaMemcpyHostToDevice));
        QL_CUDA(cudaMemcpy(dv.as(), v.data(), v.size() * 2, cudaMemcpyHostToDevice));
        const float scale = 1.0f / std::sqrt(static_cast<float>(D));
        launch_flash_attention(dq.as(), dk.as(), dv.as(), dout.as(), B, T, H, KV, D, scale);
        std::vector<uint16_t> got(q.size());
        QL_CUDA(cudaMemcpy(got.data(), dout.as(), got.size() * 2, cudaMemcpyDeviceToHost));
        double max_err = 0;
        for (int64_t b = 0; b < B; ++b)
            for (int64_t h = 0; h < H; ++h)
                for (int64_t t = 0; t < T; ++t) {
                    auto at = [&](const std::vector<uint16_t>& x, int64_t tok, int64_t heads,
                                  int64_t head, int64_t d) {
                        return static_cast<double>(f16_to_f32(
                            x[static_cast<size_t>(((b * T + tok) * heads + head) * D + d)]));
                    };
                    std::vector<double> s(static_cast<size_t>(t + 1));
                    double mx = -1e300, sum = 0;
                    for (int64_t u = 0; u <= t; ++u) {
                        double dot = 0;
                        for (int64_t d = 0; d < D; ++d)
                            dot += at(q, t, H, h, d) * at(k, u, KV, h / G, d);
                        s[static_cast<size_t>(u)] = dot * scale;
                        mx = std::max(mx, s[static_cast<size_t>(u)]);
                    }
                    for (auto& x : s) sum += (x = std::exp(x - mx));
                    for (int64_t d = 0; d < D; ++d) {
                        double o = 0;
                        for (int64_t u = 0; u <= t; ++u)
                            o += s[static_cast<size_t>(u)] / sum * at(v, u, KV, h / G, d);
                        max_err = std::max(max_err, std::fabs(o - at(got, t, H, h, d)));
                    }
                }
        std::printf("flash attention, head_dim %lld: max |error| %.3g\n", static_cast<long long>(D),
                    max_err);
        EXPECT_LT(max_err, 4e-3) << "head_dim " << D;
    }
}

// One layer of an 8B model's attention shape (32 heads, 8 KV heads, head_dim 128) over the
// sweep's batch (16 × 512 tokens): the flash path against the materialized one, same weights,
// same input. Prints both times (the pipeline benchmark reads them to decide its A/B).
TEST(FlashAttention, EightBLayerMatchesMaterializedPathAndIsTimed) {
    SKIP_WITHOUT_GPU();
    auto model = Model::open(kModel);
    ModelConfig c = model->config();
    c.n_layers = 1, c.hidden = 4096, c.n_heads = 32, c.n_kv_heads = 8, c.head_dim = 128;
    c.ffn = 256, c.vocab = 512;
    const int64_t B = 16, T = 512, N = B * T;
    std::vector<float> h0(static_cast<size_t>(N * c.hidden));
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (auto& x : h0) x = nd(rng);
    double ms[2] = {0, 0};
    std::vector<float> out[2];
    for (int flash = 0; flash < 2; ++flash) {
        CudaEngine e(c,
                     {.precision = Precision::F16, .max_tokens = N, .flash_attention = flash == 1});
        e.load_random_weights(11);
        DeviceBuffer h(h0.size() * 4);
        constexpr int reps = 10;
        cudaEvent_t t0, t1;
        QL_CUDA(cudaEventCreate(&t0));
        QL_CUDA(cudaEventCreate(&t1));
        for (int i = 0; i <= reps; ++i) {  // the first run warms up and gives the output
            QL_CUDA(cudaMemcpy(h.as(), h0.data(), h0.size() * 4, cudaMemcpyHostToDevice));
            if (i == 1) QL_CUDA(cudaEventRecord(t0));
            e.run_layer(0, h.as<float>(), B, T);
            if (i == 0) {
                out[flash].resize(h0.size());
                QL_CUDA(
                    cudaMemcpy(out[flash].data(), h.as(), h0.size() * 4, cudaMemcpyDeviceToHost));
            }
        }
        QL_CUDA(cudaEventRecord(t1));
        QL_CUDA(cudaEventSynchronize(t1));
        float elapsed = 0;
        QL_CUDA(cudaEventElapsedTime(&elapsed, t0, t1));
        ms[flash] = elapsed / reps;  // includes the 134 MB upload, the same in both
        QL_CUDA(cudaEventDestroy(t0));
        QL_CUDA(cudaEventDestroy(t1));
    }
    double max_abs = 0, ref_scale = 0;
    for (size_t i = 0; i < h0.size(); ++i) {
        max_abs = std::max(max_abs, std::fabs(static_cast<double>(out[0][i]) - out[1][i]));
        ref_scale = std::max(ref_scale, std::fabs(static_cast<double>(out[0][i] - h0[i])));
    }
    std::printf(
        "8B-shaped layer, 16 x 512 tokens: materialized %.3f ms, flash %.3f ms (ratio %.3f); "
        "max |dh| %.3g of a layer update up to %.3g\n",
        ms[0], ms[1], ms[1] / ms[0], max_abs, ref_scale);
    EXPECT_LT(max_abs, 2e-3 * std::max(1.0, ref_scale));
}

}  // namespace
}  // namespace quantlens::cuda
