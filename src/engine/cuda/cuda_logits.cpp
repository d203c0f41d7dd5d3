// See cuda_logits.h.
#include "engine/cuda/cuda_logits.h"

#include <algorithm>

#include "core/error.h"
#include "model/model.h"

namespace quantlens::cuda {
namespace {

class CudaLogitsModel final : public LogitsModel {
  public:
    CudaLogitsModel(const Model& model, CudaEngineOptions options, bool round_f16)
        : engine_(std::make_unique<CudaEngine>(model.config(), options)), path_(model.path()) {
        engine_->load_model(model, round_f16);
        QL_CHECK(engine_->complete(), "{}: the CUDA engine is missing weights", path_);
    }

    int64_t vocab() const override { return engine_->config().vocab; }
    std::string source_path() const override { return path_; }

    std::vector<float> forward(std::span<const int32_t> tokens, int64_t B, int64_t T,
                               int64_t t0) const override {
        QL_CHECK(
            B > 0 && T > 0 && t0 >= 0 && t0 < T && static_cast<int64_t>(tokens.size()) == B * T,
            "{}: {} tokens are not {} sequences of {}", path_, tokens.size(), B, T);
        engine_->reserve_tokens(T);  // a sequence longer than the batch grows the scratch
        const int64_t per_pass = std::max<int64_t>(1, engine_->options().max_tokens / T);
        const int64_t rows = T - t0, V = vocab();
        std::vector<float> out;
        out.reserve(static_cast<size_t>(B * rows * V));
        for (int64_t b0 = 0; b0 < B; b0 += per_pass) {
            const int64_t n = std::min(per_pass, B - b0);
            const std::vector<int32_t> part(tokens.begin() + b0 * T, tokens.begin() + (b0 + n) * T);
            const std::vector<float> l = engine_->forward_logits(part, n, T, t0);
            out.insert(out.end(), l.begin(), l.end());
        }
        return out;
    }

    std::optional<std::vector<float>> next_token_nll(std::span<const int32_t> tokens, int64_t B,
                                                     int64_t T, int64_t t0,
                                                     int64_t S) const override {
        QL_CHECK(B > 0 && T > 0 && t0 >= 0 && S > 0 && t0 + S < T &&
                     static_cast<int64_t>(tokens.size()) == B * T,
                 "{}: {} tokens are not {} sequences of {} with {} scored from {}", path_,
                 tokens.size(), B, T, S, t0);
        engine_->reserve_tokens(T);
        const int64_t per_pass = std::max<int64_t>(1, engine_->options().max_tokens / T);
        std::vector<float> out;
        out.reserve(static_cast<size_t>(B * S));
        for (int64_t b0 = 0; b0 < B; b0 += per_pass) {
            const int64_t n = std::min(per_pass, B - b0);
            const std::vector<int32_t> part(tokens.begin() + b0 * T, tokens.begin() + (b0 + n) * T);
            const std::vector<float> nll = engine_->next_token_nll(part, n, T, t0, S);
            out.insert(out.end(), nll.begin(), nll.end());
        }
        return out;
    }

  private:
    std::unique_ptr<CudaEngine> engine_;  // forward_logits reuses its scratch: not const
    std::string path_;
};

}  // namespace

std::unique_ptr<LogitsModel> make_cuda_logits_model(const Model& model, CudaEngineOptions options,
                                                    bool round_f16) {
    return std::make_unique<CudaLogitsModel>(model, options, round_f16);
}

}  // namespace quantlens::cuda
