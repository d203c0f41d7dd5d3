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
        load_tail_chunks(tokenizer, settings.text, settings.ctx, settings.chunks);
    run_hessians(engine, chunks, hessians_);
    fitted_tokens_ = chunks.tokens;
}

GptqRounding::GptqRounding(const GptqSettings& settings)
    : settings_(settings), hessians_(/*include_output=*/true, /*include_experts=*/false) {}

std::unique_ptr<GptqRounding> GptqRounding::on_gpu(const Model& model, const Tokenizer& tokenizer,
                                                   const GptqSettings& settings,
                                                   const std::string& what) {
    const EvalChunks chunks =
        load_tail_chunks(tokenizer, settings.text, settings.ctx, settings.chunks);
    std::unique_ptr<GptqRounding> g(new GptqRounding(settings));
    run_hessians_gpu(model, chunks, g->hessians_, 4, what);
    g->fitted_tokens_ = chunks.tokens;
    return g;
}

int64_t GptqRounding::windows_fitted_on(const std::vector<int32_t>& tokens, int64_t ctx) const {
    return count_shared_windows(fitted_tokens_, settings_.ctx, tokens, ctx);
}

bool GptqRounding::covers(const std::string& tensor, int64_t n_dims, GgmlType type) const {
    return n_dims == 2 && gptq_supports(type) && hessians_.has(tensor);
}

const GptqFactor& GptqRounding::factor(const std::string& tensor, bool act_order) const {
    const std::pair<std::string, bool> key{tensor, act_order};
    {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = factors_.find(key);
        if (it != factors_.end()) return *it->second;
    }
    // Factored outside the lock (seconds for wide inputs); a racing duplicate is discarded.
    const std::vector<double> h = hessians_.hessian(tensor);
    GptqOptions o;
    o.act_order = act_order;
    auto f = std::make_unique<GptqFactor>(gptq_factor(h.data(), hessians_.n_cols(tensor), o));
    std::lock_guard<std::mutex> lock(mu_);
    auto [it, inserted] = factors_.emplace(key, std::move(f));
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

GptqPacked GptqRounding::pack_format(const std::string& tensor, const GptqFormat& format,
                                     const float* w, int64_t out, int64_t in,
                                     bool act_order) const {
    QL_CHECK(hessians_.has(tensor), "gptq: no input Hessian was collected for tensor '{}'", tensor);
    QL_CHECK(hessians_.n_cols(tensor) == in,
             "gptq: tensor '{}' has rows of {} values, its Hessian is {} wide", tensor, in,
             hessians_.n_cols(tensor));
    return gptq_pack_gptq(format, w, out, in, factor(tensor, act_order), tensor);
}

}  // namespace quantlens
