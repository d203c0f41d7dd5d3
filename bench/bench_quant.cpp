// Quantize throughput per type (MB/s of f32 input), single thread and all threads, on a
// llama-8m weight (blk.0.ffn_down.weight, 256 x 768; synthetic data of the same shape if
// the model is missing). With importance for the types ggml requires it for.
//   bench_quant --benchmark_filter='Q4_K'
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "core/parallel.h"
#include "model/model.h"
#include "quant/quant.h"

namespace {

using namespace quantlens;

struct Weight {
    std::vector<float> w;
    std::vector<float> importance;
    int64_t rows = 256, cols = 768;
};

const Weight& weight() {
    static const Weight data = [] {
        Weight d;
        const char* env = std::getenv("QUANTLENS_SHARED");
        const std::string dir = std::string(env ? env : QL_SHARED_DIR) + "/models/llama-8m";
        try {
            const auto model = Model::open(dir);
            const TensorInfo& t = model->get("blk.0.ffn_down.weight");
            d.w = model->read_f32(t);
            d.cols = t.n_per_row();
            d.rows = t.n_rows();
        } catch (const std::exception&) {
            d.w.resize(static_cast<size_t>(d.rows * d.cols));
            for (size_t i = 0; i < d.w.size(); ++i)
                d.w[i] = 0.02f * std::sin(0.37f * static_cast<float>(i)) *
                         (1.0f + 0.5f * std::cos(0.001f * static_cast<float>(i)));
        }
        d.importance.resize(static_cast<size_t>(d.cols));
        for (int64_t j = 0; j < d.cols; ++j)
            d.importance[static_cast<size_t>(j)] = 1.0f + 0.5f * std::sin(0.1f * j);
        return d;
    }();
    return data;
}

void BM_Quantize(benchmark::State& state, GgmlType type, int threads) {
    const Weight& d = weight();
    const int saved = num_threads();
    set_num_threads(threads > 0 ? threads : saved);
    std::vector<uint8_t> out(ggml_row_size(type, d.cols) * static_cast<size_t>(d.rows));
    const float* imp = quant_traits(type).needs_importance ? d.importance.data() : nullptr;
    for (auto _ : state) {
        quantize(type, d.w.data(), out.data(), d.rows, d.cols, imp);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(d.w.size() * sizeof(float)));
    state.SetLabel(std::to_string(num_threads()) + " threads");
    set_num_threads(saved);
}

// Registered from main, not a static initializer: the type tables are globals of other
// translation units and may not be constructed yet during static initialization.
void register_all() {
    for (GgmlType t : quantizable_types()) {
        const std::string name = quant_traits(t).name;
        benchmark::RegisterBenchmark(("quantize/" + name + "/1thread").c_str(), BM_Quantize, t, 1)
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
        benchmark::RegisterBenchmark(("quantize/" + name + "/all").c_str(), BM_Quantize, t, 0)
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
    }
}

}  // namespace

int main(int argc, char** argv) {
    register_all();
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
