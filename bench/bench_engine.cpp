// Engine throughput on llama-8m: one batch of 4 chunks of 512 tokens through the full
// forward pass with the eval head (second half of each chunk), as `quantlens eval` runs it.
// Counter "tokens/s" compares with llama-perplexity's 2,773 tokens/s (F16, 2 threads).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <numeric>

#include "engine/engine.h"
#include "engine/kernels.h"
#include "model/model.h"

namespace {

std::string shared_dir() {
    const char* env = std::getenv("QUANTLENS_SHARED");
    return env ? env : QL_SHARED_DIR;
}

void BM_ForwardLlama8m(benchmark::State& state) {
    const auto model = quantlens::Model::open(shared_dir() + "/models/llama-8m");
    quantlens::EngineOptions o;
    o.f16_weights = true;
    quantlens::Engine engine(*model, o);
    const int64_t B = state.range(0), T = 512;
    std::vector<int32_t> tokens(B * T);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>((i * 7919) % 4096);
    for (auto _ : state) benchmark::DoNotOptimize(engine.forward(tokens, B, T, T / 2));
    state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(B * T),
                                                    benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_ForwardLlama8m)->Arg(1)->Arg(4)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Attention(benchmark::State& state) {
    quantlens::engine_init_blas();
    const int64_t B = 4, T = 512, H = 4, KV = 2, D = 64;
    std::vector<float> q(B * T * H * D, 0.01f), k(B * T * KV * D, 0.02f), v(B * T * KV * D, 0.5f),
        out(B * T * H * D);
    for (auto _ : state)
        quantlens::attention_forward(out.data(), q.data(), k.data(), v.data(), B, T, H, KV, D);
}
BENCHMARK(BM_Attention)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
