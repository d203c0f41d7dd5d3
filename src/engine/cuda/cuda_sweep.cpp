// The GPU sweep backend: see cuda_sweep.h. Mirrors analysis/sweep/sweep_cpu.cpp with the prefix
// cache, the reference log-probabilities and the reductions on the device.
#include "engine/cuda/cuda_sweep.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "core/error.h"
#include "core/profile.h"
#include "engine/cuda/cuda_common.cuh"
#include "engine/cuda/cuda_kernels.h"
#include "engine/engine.h"
#include "model/model.h"

namespace quantlens::cuda {
namespace {

// QUANTLENS_PROFILE=1: where a GPU sweep's time goes, printed when the backend ends — device
// time of the layers, the head GEMM and the scoring (CUDA events, no extra synchronization),
// and host wall time of the fake quantization (it waits for the error sums) and of the rest.
struct Profile {
    bool on = profiling();
    cudaEvent_t ev[4] = {};  // item start, layers done, head done, scoring done
    double layers_ms = 0, head_ms = 0, score_ms = 0, fake_quant_s = 0, evaluate_s = 0;
    int64_t items = 0;
    Profile() {
        if (on)
            for (auto& e : ev) QL_CUDA(cudaEventCreate(&e));
    }
    ~Profile() {
        if (!on) return;
        std::fprintf(stderr,
                     "profile: %lld evaluations; device: layers %.1f s, head GEMM %.1f s, scoring "
                     "%.1f s; host wall: fake quantization + error sums %.1f s, evaluate %.1f s\n",
                     static_cast<long long>(items), layers_ms / 1e3, head_ms / 1e3, score_ms / 1e3,
                     fake_quant_s, evaluate_s);
        for (auto& e : ev) cudaEventDestroy(e);
    }
    void mark(int i) {
        if (on) QL_CUDA(cudaEventRecord(ev[i], nullptr));
    }
    void add_device_times() {  // after the evaluation's synchronizing copy
        if (!on) return;
        float a = 0, b = 0, c = 0;
        QL_CUDA(cudaEventElapsedTime(&a, ev[0], ev[1]));
        QL_CUDA(cudaEventElapsedTime(&b, ev[1], ev[2]));
        QL_CUDA(cudaEventElapsedTime(&c, ev[2], ev[3]));
        layers_ms += a, head_ms += b, score_ms += c;
        ++items;
    }
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

class Backend final : public CudaSweepBackend {
  public:
    explicit Backend(std::unique_ptr<CudaEngine> engine) : engine_(std::move(engine)) {
        QL_CHECK(engine_->complete(), "CUDA sweep backend: the engine's weights are not loaded");
    }

    CudaEngine& engine() override { return *engine_; }
    int64_t n_layers() const override { return engine_->config().n_layers; }

    std::vector<float> original(const std::string& name) const override {
        return engine_->original(name);
    }
    void set_override(const std::string& name, std::vector<float> values, GgmlType type) override {
        engine_->set_override(name, values.data(), static_cast<int64_t>(values.size()), type);
    }
    std::optional<WeightErrorSums> set_fake_quant_override(const std::string& name, GgmlType type,
                                                           std::span<const float> importance,
                                                           bool weigh_error) override {
        WeightErrorSums sums;
        const FakeQuantImportanceHost imp{importance, weigh_error};
        const auto t0 = std::chrono::steady_clock::now();
        const bool done =
            engine_->override_with_type(name, type, &sums, importance.empty() ? nullptr : &imp);
        if (profile_.on) profile_.fake_quant_s += seconds_since(t0);
        if (!done) return std::nullopt;
        return sums;
    }
    void clear_override(const std::string& name) override { engine_->clear_override(name); }
    void observe_routing(RoutingObserver observer) override {
        engine_->set_routing_observer(std::move(observer));
    }
    void clear_overrides() override { engine_->clear_overrides(); }

    void prepare(const EvalChunks& chunks) override {
        const ModelConfig& c = engine_->config();
        QL_CHECK(chunks.n_chunks > 0 && chunks.n_ctx > 1 && chunks.first_scored >= 0 &&
                     chunks.first_scored < chunks.n_ctx - 1 &&
                     static_cast<int64_t>(chunks.tokens.size()) == chunks.n_chunks * chunks.n_ctx,
                 "CUDA sweep: bad evaluation chunks ({} chunks of {}, first scored {}, {} tokens)",
                 chunks.n_chunks, chunks.n_ctx, chunks.first_scored, chunks.tokens.size());
        QL_CHECK(chunks.n_ctx <= engine_->options().max_tokens,
                 "CUDA sweep: context {} exceeds the engine's batch of {} tokens", chunks.n_ctx,
                 engine_->options().max_tokens);
        for (size_t i = 0; i < chunks.tokens.size(); ++i)
            QL_CHECK(chunks.tokens[i] >= 0 && chunks.tokens[i] < c.vocab,
                     "CUDA sweep: token id {} at position {} is outside the vocabulary of {}",
                     chunks.tokens[i], i, c.vocab);
        chunks_ = chunks;
        // Rows of the state (cuda_engine.h: wider than the hidden state for Gemma 4).
        const int64_t L = c.n_layers, C = engine_->state_width(), V = c.vocab, T = chunks.n_ctx;
        const int64_t S = T - 1 - chunks.first_scored, R = T - chunks.first_scored;
        const int64_t n_tok = chunks.n_chunks * T, n_scored = chunks.n_chunks * S;
        batch_ = std::max<int64_t>(1, engine_->options().max_tokens / T);
        const int64_t B = std::min(batch_, chunks.n_chunks);

        tokens_.resize(static_cast<size_t>(n_tok) * 4);
        QL_CUDA(cudaMemcpy(tokens_.as(), chunks.tokens.data(), static_cast<size_t>(n_tok) * 4,
                           cudaMemcpyHostToDevice));
        std::vector<int32_t> next(static_cast<size_t>(n_scored));
        for (int64_t ch = 0; ch < chunks.n_chunks; ++ch)
            for (int64_t s = 0; s < S; ++s)
                next[static_cast<size_t>(ch * S + s)] =
                    chunks.tokens[static_cast<size_t>(ch * T + chunks.first_scored + s + 1)];
        next_.resize(next.size() * 4);
        QL_CUDA(cudaMemcpy(next_.as(), next.data(), next.size() * 4, cudaMemcpyHostToDevice));

        layer_elems_ = n_tok * C;
        cache_.resize(static_cast<size_t>((L + 1) * layer_elems_) * 4);
        ref_logp_.resize(static_cast<size_t>(n_scored * V) * 4);
        ref_top1_.resize(static_cast<size_t>(n_scored) * 4);
        ref_lse_.resize(static_cast<size_t>(n_scored) * 8);
        logits_.resize(static_cast<size_t>(B * R * V) * 4);
        h_.resize(static_cast<size_t>(B * T * C) * 4);
        stats_.resize(static_cast<size_t>(n_scored) * sizeof(RowStats));
        layer_sq_.resize(static_cast<size_t>(L + 1) * 8);
        partials_.resize(1024 * 8);

        for (int64_t b0 = 0; b0 < chunks.n_chunks; b0 += batch_) {
            const int64_t Bn = std::min(batch_, chunks.n_chunks - b0), off = b0 * T * C;
            engine_->embed(tokens_.as<int32_t>() + b0 * T, Bn * T, cache(0) + off);
            for (int64_t l = 0; l < L; ++l) {
                QL_CUDA(cudaMemcpy(cache(l + 1) + off, cache(l) + off,
                                   static_cast<size_t>(Bn * T * C) * 4, cudaMemcpyDeviceToDevice));
                engine_->run_layer(l, cache(l + 1) + off, Bn, T);
            }
            engine_->head(cache(L) + off, Bn, T, chunks.first_scored, logits_.as<float>());
            launch_reference_rows(logits_.as<float>(), Bn, S, R, V, ref_logp_.as<float>(),
                                  ref_lse_.as<double>(), ref_top1_.as<int32_t>(), b0 * S);
        }
        engine_->synchronize();
    }

    PerturbedStats evaluate(int64_t from_layer, bool recompute_embedding) override {
        const ModelConfig& c = engine_->config();
        const int64_t L = c.n_layers, C = engine_->state_width(), V = c.vocab, T = chunks_.n_ctx;
        const int64_t S = T - 1 - chunks_.first_scored, R = T - chunks_.first_scored;
        const int64_t hidden = c.hidden;  // the layer MSE is the hidden state's, as the CPU's
        QL_ASSERT(from_layer >= 0 && from_layer <= L && chunks_.n_chunks > 0);
        const auto t0 = std::chrono::steady_clock::now();
        QL_CUDA(cudaMemset(layer_sq_.as(), 0, layer_sq_.bytes()));
        const bool one_batch = chunks_.n_chunks <= batch_;  // the profile times one batch
        float* h = h_.as<float>();
        for (int64_t b0 = 0; b0 < chunks_.n_chunks; b0 += batch_) {
            const int64_t Bn = std::min(batch_, chunks_.n_chunks - b0), off = b0 * T * C;
            const int64_t n = Bn * T * C;
            if (one_batch) profile_.mark(0);
            if (recompute_embedding) {
                engine_->embed(tokens_.as<int32_t>() + b0 * T, Bn * T, h);
            } else {
                QL_CUDA(cudaMemcpy(h, cache(from_layer) + off, static_cast<size_t>(n) * 4,
                                   cudaMemcpyDeviceToDevice));
            }
            for (int64_t l = from_layer; l < L; ++l) {
                engine_->run_layer(l, h, Bn, T);
                launch_sq_diff_accumulate(h, cache(l + 1) + off, Bn * T * hidden,
                                          partials_.as<double>(), layer_sq_.as<double>() + l,
                                          hidden, C);
            }
            if (one_batch) profile_.mark(1);
            engine_->head(h, Bn, T, chunks_.first_scored, logits_.as<float>());
            if (one_batch) profile_.mark(2);
            launch_score_rows(logits_.as<float>(), Bn, S, R, V, ref_logp_.as<float>(),
                              ref_lse_.as<double>(), ref_top1_.as<int32_t>(), next_.as<int32_t>(),
                              b0 * S, stats_.as<RowStats>() + b0 * S);
            if (one_batch) profile_.mark(3);
        }
        const int64_t n_scored = chunks_.n_chunks * S;
        std::vector<RowStats> rows(static_cast<size_t>(n_scored));
        std::vector<double> sq(static_cast<size_t>(L + 1));
        QL_CUDA(cudaMemcpy(rows.data(), stats_.as(), rows.size() * sizeof(RowStats),
                           cudaMemcpyDeviceToHost));
        QL_CUDA(cudaMemcpy(sq.data(), layer_sq_.as(), sq.size() * 8, cudaMemcpyDeviceToHost));
        if (one_batch) profile_.add_device_times();
        if (profile_.on) profile_.evaluate_s += seconds_since(t0);
        PerturbedStats st;
        st.token_kld.reserve(rows.size());
        for (const RowStats& r : rows) {
            st.token_kld.push_back(static_cast<float>(r.kld));  // the tails (p99, p99.9)
            st.kld_sum += r.kld;
            st.kld_max = std::max(st.kld_max, r.kld);
            st.nll_sum += r.nll;
            st.ref_nll_sum += r.ref_nll;
            st.dp_sq_sum += r.dp2;
            st.top1_same += r.same;
            st.n_scored++;
        }
        const double n_el = static_cast<double>(chunks_.n_chunks * T * hidden);
        st.layer_mse.assign(static_cast<size_t>(L), 0.0);
        for (int64_t l = 0; l < L; ++l) st.layer_mse[static_cast<size_t>(l)] = sq[l] / n_el;
        st.final_mse = L > 0 ? st.layer_mse[static_cast<size_t>(L - 1)] : 0.0;
        return st;
    }

  private:
    float* cache(int64_t l) { return cache_.as<float>() + l * layer_elems_; }

    std::unique_ptr<CudaEngine> engine_;
    Profile profile_;
    EvalChunks chunks_;
    int64_t batch_ = 1, layer_elems_ = 0;
    DeviceBuffer tokens_, next_, cache_, ref_logp_, ref_lse_, ref_top1_, logits_, h_, stats_,
        layer_sq_, partials_;
};

}  // namespace

std::unique_ptr<CudaSweepBackend> make_cuda_sweep_backend(const Model& model,
                                                          CudaEngineOptions options,
                                                          bool round_f16) {
    auto engine = std::make_unique<CudaEngine>(model.config(), options);
    engine->load_model(model, round_f16);
    return std::make_unique<Backend>(std::move(engine));
}

std::unique_ptr<CudaSweepBackend> make_cuda_sweep_backend(const Engine& cpu,
                                                          CudaEngineOptions options) {
    auto engine = std::make_unique<CudaEngine>(cpu.config(), options);
    for (const auto& spec : engine->weight_specs()) {
        if (!cpu.model().find(spec.name)) continue;  // optional and absent (tied output)
        const std::vector<float>& v = cpu.original(spec.name);
        engine->load_weight(spec.name, v.data(), static_cast<int64_t>(v.size()),
                            cpu.stored_type(spec.name));
    }
    return std::make_unique<Backend>(std::move(engine));
}

std::unique_ptr<CudaSweepBackend> make_cuda_sweep_backend(std::unique_ptr<CudaEngine> engine) {
    return std::make_unique<Backend>(std::move(engine));
}

}  // namespace quantlens::cuda
