#include "analysis/sweep/sweep_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "analysis/measure/kld.h"
#include "core/error.h"
#include "core/parallel.h"
#include "engine/engine.h"

namespace quantlens {
namespace {

int64_t argmax(const float* x, int64_t n) {
    return std::max_element(x, x + n) - x;
}

class CpuSweepBackend final : public SweepBackend {
  public:
    CpuSweepBackend(Engine& engine, int64_t batch) : engine_(engine), batch_(batch) {}

    int64_t n_layers() const override { return engine_.n_layers(); }

    std::vector<float> original(const std::string& name) const override {
        return engine_.original(name);
    }
    void set_override(const std::string& name, std::vector<float> values, GgmlType type) override {
        engine_.set_override(name, std::move(values), type);
    }
    void clear_override(const std::string& name) override { engine_.clear_override(name); }
    void observe_routing(RoutingObserver observer) override {
        if (!observer) {
            engine_.clear_hook();
            return;
        }
        engine_.set_hook([observer = std::move(observer)](const HookEvent& e) {
            if (e.kind != HookEvent::Kind::Routing) return;
            std::vector<int32_t> ids(static_cast<size_t>(e.rows * e.cols));
            for (size_t i = 0; i < ids.size(); ++i)
                ids[i] = static_cast<int32_t>(e.data[i]);  // small integers, exact in float
            observer(e.layer, ids, e.rows, e.cols);
        });
    }

    void prepare(const EvalChunks& chunks) override {
        chunks_ = chunks;
        // Rows of state_width() floats: the hidden state plus what a layer reads besides it
        // (Gemma 4's per-layer inputs and shared K/V), so a resumed layer is exact.
        const int64_t L = engine_.n_layers(), C = engine_.state_width(), V = engine_.vocab();
        const int64_t T = chunks.n_ctx, S = chunks.n_ctx - 1 - chunks.first_scored;
        const int64_t N = chunks.n_chunks * T;
        cache_.assign(static_cast<size_t>(L + 2), std::vector<float>());
        for (auto& c : cache_) c.resize(static_cast<size_t>(N * C));
        ref_logp_.resize(static_cast<size_t>(chunks.n_chunks * S * V));
        ref_top1_.resize(static_cast<size_t>(chunks.n_chunks * S));
        // cache_[l] = input of layer l (l = 0 is the embedding), cache_[L] = last layer's
        // output, cache_[L+1] unused for h; final-norm outputs are recomputed by head().
        for (int64_t b0 = 0; b0 < chunks.n_chunks; b0 += batch_) {
            const int64_t B = std::min(batch_, chunks.n_chunks - b0);
            std::span<const int32_t> toks(chunks.tokens.data() + b0 * T,
                                          static_cast<size_t>(B * T));
            std::vector<float> h = engine_.embed(toks);
            std::memcpy(cache_[0].data() + b0 * T * C, h.data(), h.size() * sizeof(float));
            for (int64_t l = 0; l < L; ++l) {
                engine_.run_layer(l, h.data(), B, T);
                std::memcpy(cache_[l + 1].data() + b0 * T * C, h.data(), h.size() * sizeof(float));
            }
            std::vector<float> logits = engine_.head(h.data(), B, T, chunks.first_scored);
            // head gives B*(T-t0) rows; the last position of each sequence is not scored.
            const int64_t R = T - chunks.first_scored;
            for (int64_t b = 0; b < B; ++b)
                for (int64_t s = 0; s < S; ++s) {
                    const float* row = logits.data() + (b * R + s) * V;
                    float* out = ref_logp_.data() + ((b0 + b) * S + s) * V;
                    log_softmax_row(row, V, out);
                    ref_top1_[static_cast<size_t>((b0 + b) * S + s)] =
                        static_cast<int32_t>(argmax(row, V));
                }
        }
        cache_.resize(static_cast<size_t>(L + 1));
    }

    PerturbedStats evaluate(int64_t from_layer, bool recompute_embedding) override {
        const int64_t L = engine_.n_layers(), C = engine_.state_width(), T = chunks_.n_ctx;
        const int64_t hidden = engine_.hidden();
        QL_ASSERT(from_layer >= 0 && from_layer <= L);
        PerturbedStats st;
        st.layer_mse.assign(static_cast<size_t>(L), 0.0);
        std::vector<double> layer_sq(static_cast<size_t>(L), 0.0);
        for (int64_t b0 = 0; b0 < chunks_.n_chunks; b0 += batch_) {
            const int64_t B = std::min(batch_, chunks_.n_chunks - b0);
            const size_t off = static_cast<size_t>(b0 * T * C),
                         len = static_cast<size_t>(B * T * C);
            std::vector<float> h;
            if (recompute_embedding) {
                std::span<const int32_t> toks(chunks_.tokens.data() + b0 * T,
                                              static_cast<size_t>(B * T));
                h = engine_.embed(toks);
            } else {
                h.assign(cache_[from_layer].begin() + off, cache_[from_layer].begin() + off + len);
            }
            for (int64_t l = from_layer; l < L; ++l) {
                engine_.run_layer(l, h.data(), B, T);
                layer_sq[l] +=
                    squared_diff(h.data(), cache_[l + 1].data() + off, len / C, C, hidden);
            }
            std::vector<float> logits = engine_.head(h.data(), B, T, chunks_.first_scored);
            score_batch(logits, b0, B, st);
        }
        const double n_el = static_cast<double>(chunks_.n_chunks * T * hidden);
        for (int64_t l = 0; l < L; ++l) st.layer_mse[l] = layer_sq[l] / n_el;
        st.final_mse = L > 0 ? st.layer_mse[L - 1] : 0.0;
        return st;
    }

  private:
    // Per-token statistics computed in parallel into arrays, then summed in order so the
    // totals do not depend on the thread count.
    void score_batch(const std::vector<float>& logits, int64_t b0, int64_t B, PerturbedStats& st) {
        const int64_t V = engine_.vocab(), T = chunks_.n_ctx;
        const int64_t S = chunks_.n_ctx - 1 - chunks_.first_scored, R = T - chunks_.first_scored;
        const size_t n = static_cast<size_t>(B * S);
        std::vector<double> kld(n), nll(n), ref_nll(n), dp2(n);
        std::vector<uint8_t> same(n);
        parallel_for(
            n,
            [&](size_t begin, size_t end) {
                std::vector<float> logp(static_cast<size_t>(V));
                for (size_t i = begin; i < end; ++i) {
                    const int64_t b = static_cast<int64_t>(i) / S, s = static_cast<int64_t>(i) % S;
                    const float* row = logits.data() + (b * R + s) * V;
                    const float* ref = ref_logp_.data() + ((b0 + b) * S + s) * V;
                    log_softmax_row(row, V, logp.data());
                    double k = 0;
                    for (int64_t v = 0; v < V; ++v)
                        k += std::exp(static_cast<double>(ref[v])) *
                             (static_cast<double>(ref[v]) - logp[v]);
                    const int32_t next = chunks_.tokens[static_cast<size_t>(
                        (b0 + b) * T + chunks_.first_scored + s + 1)];
                    kld[i] = std::max(k, 0.0);
                    nll[i] = -logp[next];
                    ref_nll[i] = -ref[next];
                    const double dp = std::exp(static_cast<double>(logp[next])) -
                                      std::exp(static_cast<double>(ref[next]));
                    dp2[i] = dp * dp;
                    same[i] = argmax(row, V) == ref_top1_[static_cast<size_t>((b0 + b) * S + s)];
                }
            },
            16);
        for (size_t i = 0; i < n; ++i) {
            st.kld_sum += kld[i];
            st.kld_max = std::max(st.kld_max, kld[i]);
            st.token_kld.push_back(static_cast<float>(kld[i]));
            st.nll_sum += nll[i];
            st.ref_nll_sum += ref_nll[i];
            st.dp_sq_sum += dp2[i];
            st.top1_same += same[i];
            st.n_scored++;
        }
    }

    // Over the first `cols` floats of each of `rows` rows `width` apart (the hidden state).
    static double squared_diff(const float* a, const float* b, size_t rows, int64_t width,
                               int64_t cols) {
        double s = 0;
        for (size_t r = 0; r < rows; ++r)
            for (int64_t i = 0; i < cols; ++i) {
                const size_t k = r * static_cast<size_t>(width) + static_cast<size_t>(i);
                const double d = static_cast<double>(a[k]) - b[k];
                s += d * d;
            }
        return s;
    }

    Engine& engine_;
    int64_t batch_;
    EvalChunks chunks_;
    std::vector<std::vector<float>> cache_;
    std::vector<float> ref_logp_;
    std::vector<int32_t> ref_top1_;
};

}  // namespace

std::unique_ptr<SweepBackend> make_cpu_sweep_backend(Engine& engine, int64_t batch) {
    return std::make_unique<CpuSweepBackend>(engine, batch);
}

}  // namespace quantlens
