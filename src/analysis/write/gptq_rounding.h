// GPTQ rounding of a model's weights (quant/gptq.h) against input Hessians collected once from
// calibration text (analysis/measure/hessian.h): what `sweep --gptq` measures and `quantize --gptq`
// writes, so a plan made from the one is verified on files made by the other.
//
// Covered: 2-D weights that are the input of a matmul and were seen by the hook (every blk.*
// linear and output.weight) at a type gptq_supports(). Not covered, and rounded by the plain
// quantizer (callers list them by name): token_embd (a row lookup, no input to weigh),
// stacked expert weights, and other types (e.g. IQ3_S). The Hessian inputs are those of the
// full-precision model (not re-collected after earlier layers are rounded).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "analysis/measure/hessian.h"
#include "core/ggml_type.h"
#include "quant/gptq.h"
#include "quant/gptq_pack.h"

namespace quantlens {

class Engine;
class Model;
class Tokenizer;

// The --gptq-chunks option's help, for every command that takes it.
inline constexpr const char* kGptqChunksHelp =
    "The last N chunks of the --gptq text: GPTQ fits the end of the text, so a sweep or "
    "verify of the same file, read from its start, measures text the rounding never saw";

struct GptqSettings {
    std::string text;     // calibration text (not the evaluation text)
    int64_t ctx = 512;    // chunk length
    int64_t chunks = 64;  // the text's LAST chunks used (fewer if the text is shorter)
};

class GptqRounding {
  public:
    // Runs `engine` (as it is: no overrides) over the text's last chunks (load_tail_chunks,
    // analysis/measure/chunks.h) to collect the Hessians: a sweep or verify reading the same
    // file from its start then measures text the rounding was not fitted to.
    // Throws Error when the text cannot be read or holds fewer tokens than one chunk.
    GptqRounding(Engine& engine, const Tokenizer& tokenizer, const GptqSettings& settings);
    // The same, the Hessians collected on the GPU (run_hessians_gpu, analysis/measure/hessian.h:
    // F16 weights and activations); `what` names the command in its refusals (no CUDA, no GPU,
    // a mixture-of-experts model).
    static std::unique_ptr<GptqRounding> on_gpu(const Model& model, const Tokenizer& tokenizer,
                                                const GptqSettings& settings,
                                                const std::string& what);

    bool covers(const std::string& tensor, int64_t n_dims, GgmlType type) const;
    // Quantized bytes of `type` for w (n_rows × n_per_row); `importance` as quantize() takes
    // it (block parameters only). Requires covers(). Thread-safe.
    size_t quantize(const std::string& tensor, GgmlType type, const float* w, void* dst,
                    int64_t n_rows, int64_t n_per_row, const float* importance) const;
    // quantize, then dequantize into out (n_rows × n_per_row floats).
    void fake_quantize(const std::string& tensor, GgmlType type, const float* w, float* out,
                       int64_t n_rows, int64_t n_per_row, const float* importance) const;

    // GPTQ's own formats (quant/gptq_pack.h) with error feedback against the tensor's
    // Hessian; act_order: columns in descending diag H (desc_act). w: out × in floats.
    // Requires has_hessian(). Thread-safe.
    bool has_hessian(const std::string& tensor) const { return hessians_.has(tensor); }
    // The tensor's Σ xᵀx (n_per_row², row-major); the rounding proxy (rounding.h) weighs
    // errors with it. Requires has_hessian().
    std::vector<double> hessian(const std::string& tensor) const {
        return hessians_.hessian(tensor);
    }
    GptqPacked pack_format(const std::string& tensor, const GptqFormat& format, const float* w,
                           int64_t out, int64_t in, bool act_order) const;

    int64_t n_tokens() const { return static_cast<int64_t>(fitted_tokens_.size()); }
    const GptqSettings& settings() const { return settings_; }
    int64_t n_chunks() const { return n_tokens() / settings_.ctx; }
    // How many windows of `tokens` (cut at ctx) share text with the chunks the Hessians came
    // from (count_shared_windows, analysis/measure/chunks.h): measured there, GPTQ-rounded
    // weights look better than elsewhere, the more so the fewer their bits.
    int64_t windows_fitted_on(const std::vector<int32_t>& tokens, int64_t ctx) const;

  private:
    explicit GptqRounding(const GptqSettings& settings);
    const GptqFactor& factor(const std::string& tensor, bool act_order = false) const;

    GptqSettings settings_;
    HessianCollector hessians_;
    std::vector<int32_t> fitted_tokens_;  // the chunks the Hessians came from
    mutable std::mutex mu_;
    mutable std::map<std::pair<std::string, bool>, std::unique_ptr<GptqFactor>> factors_;
};

}  // namespace quantlens
