// Quantized matrix products (quant/vec_dot.h) against the f32 sgemm they replace, on
// llama-8m's shapes for one eval batch (4 chunks of 512 = 2048 rows): ffn_up [768, 256] and
// ffn_down [256, 768]. Counter "GFLOP/s" counts 2·N·IN·OUT per product.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "engine/kernels.h"
#include "quant/quant.h"
#include "quant/vec_dot.h"

namespace {

using quantlens::GgmlType;

std::vector<float> random_values(size_t n) {
    std::mt19937 rng(1);
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng);
    return v;
}

void BM_QuantizedMatmul(benchmark::State& state) {
    const auto type = static_cast<GgmlType>(state.range(0));
    const int64_t N = 2048, IN = state.range(1), OUT = state.range(2);
    const std::vector<float> w = random_values(IN * OUT), in = random_values(N * IN);
    std::vector<uint8_t> q(quantlens::ggml_row_size(type, IN) * OUT);
    quantlens::quantize(type, w.data(), q.data(), OUT, IN);
    std::vector<float> out(N * OUT);
    for (auto _ : state)
        quantlens::vec_dot::matmul(out.data(), in.data(), type, q.data(), nullptr, N, IN, OUT);
    state.counters["GFLOP/s"] = benchmark::Counter(2.0 * N * IN * OUT * 1e-9,
                                                   benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_QuantizedMatmul)
    ->Args({static_cast<int>(GgmlType::Q4_K), 256, 768})
    ->Args({static_cast<int>(GgmlType::Q6_K), 768, 256})
    ->Args({static_cast<int>(GgmlType::Q8_0), 256, 768})
    ->Args({static_cast<int>(GgmlType::Q4_K), 2048, 256})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// The kernel alone: four activation rows against weight rows that stay in L1/L2 (IN = 2048,
// 16 weight rows), so the figure is the kernel's arithmetic rate, not memory's.
void BM_Dot4(benchmark::State& state) {
    const auto type = static_cast<GgmlType>(state.range(0));
    const int64_t IN = 2048, ROWS = 16;
    const std::vector<float> w = random_values(IN * ROWS), in = random_values(4 * IN);
    const size_t row = quantlens::ggml_row_size(type, IN);
    std::vector<uint8_t> q(row * ROWS);
    quantlens::quantize(type, w.data(), q.data(), ROWS, IN);
    const size_t stride = quantlens::vec_dot::act_row_size(type, IN);
    std::vector<uint8_t> act(4 * stride);
    for (int r = 0; r < 4; ++r)
        quantlens::vec_dot::quantize_act_row(type, in.data() + r * IN, act.data() + r * stride, IN);
    float out[4];
    for (auto _ : state)
        for (int64_t o = 0; o < ROWS; ++o) {
            quantlens::vec_dot::dot4(type, q.data() + o * row, act.data(), stride, IN, out);
            benchmark::DoNotOptimize(out);
        }
    state.counters["GFLOP/s"] = benchmark::Counter(2.0 * 4 * IN * ROWS * 1e-9,
                                                   benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Dot4)
    ->Arg(static_cast<int>(GgmlType::Q4_K))
    ->Arg(static_cast<int>(GgmlType::Q6_K))
    ->Arg(static_cast<int>(GgmlType::Q8_0));

void BM_F32Matmul(benchmark::State& state) {
    quantlens::engine_init_blas();
    const int64_t N = 2048, IN = state.range(0), OUT = state.range(1);
    const std::vector<float> w = random_values(IN * OUT), in = random_values(N * IN);
    std::vector<float> out(N * OUT);
    for (auto _ : state)
        quantlens::matmul_forward(out.data(), in.data(), w.data(), nullptr, N, IN, OUT);
    state.counters["GFLOP/s"] = benchmark::Counter(2.0 * N * IN * OUT * 1e-9,
                                                   benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_F32Matmul)
    ->Args({256, 768})
    ->Args({768, 256})
    ->Args({2048, 256})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
