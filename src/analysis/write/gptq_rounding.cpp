// GPTQ rounding of a model's weights: see gptq_rounding.h.
#include "analysis/write/gptq_rounding.h"

#include <vector>

#include "analysis/measure/chunks.h"
#include "core/error.h"
#include "engine/engine.h"
#include "engine/tokenizer.h"
#include "quant/quant.h"

namespace quantlens {

GptqRounding::GptqRounding(Engine& engine, const Tokenizer& tokenizer, const GptqSettings& settings)
    : settings_(settings), hessians_(/*include_output=*/true, /*include_experts=*/false) {
    const EvalChunks chunks =
        load_eval_chunks(tokenizer, settings.text, settings.ctx, settings.chunks);
    run_hessians(engine, chunks, hessians_);
    n_tokens_ = chunks.n_chunks * chunks.n_ctx;
}

bool GptqRounding::covers(const std::string& tensor, int64_t n_dims, GgmlType type) const {
    return n_dims == 2 && gptq_supports(type) && hessians_.has(tensor);
}

const GptqFactor& GptqRounding::factor(const std::string& tensor) const {
    {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = factors_.find(tensor);
        if (it != factors_.end()) return *it->second;
    }
    // Factored outside the lock (seconds for wide inputs); a racing duplicate is discarded.
    const std::vector<double> h = hessians_.hessian(tensor);
    auto f = std::make_unique<GptqFactor>(gptq_factor(h.data(), hessians_.n_cols(tensor)));
    std::lock_guard<std::mutex> lock(mu_);
    auto [it, inserted] = factors_.emplace(tensor, std::move(f));
    return *it->second;
}

size_t GptqRounding::quantize(const std::string& tensor, GgmlType type, const float* w, void* dst,
                              int64_t n_rows, int64_t n_per_row, const float* importance) const {
    QL_CHECK(hessians_.has(tensor) && gptq_supports(type),
             "gptq: tensor '{}' at {} is not covered (no Hessian, or an unsupported type)", tensor,
             quant_traits(type).name);
    QL_CHECK(hessians_.n_cols(tensor) == n_per_row,
             "gptq: tensor '{}' has rows of {} values, its Hessian is {} wide", tensor, n_per_row,
             hessians_.n_cols(tensor));
    return gptq_quantize(type, w, dst, n_rows, n_per_row, factor(tensor), importance);
}

void GptqRounding::fake_quantize(const std::string& tensor, GgmlType type, const float* w,
                                 float* out, int64_t n_rows, int64_t n_per_row,
                                 const float* importance) const {
    std::vector<uint8_t> bytes(ggml_row_size(type, n_per_row) * static_cast<size_t>(n_rows));
    quantize(tensor, type, w, bytes.data(), n_rows, n_per_row, importance);
    dequantize(type, bytes.data(), out, n_rows, n_per_row);
}

}  // namespace quantlens
