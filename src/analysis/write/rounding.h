// Rounding as a per-tensor choice (formats/recipe.h: plain, imatrix, gptq): what each does to a
// tensor, how a sweep names the items that measure it, and the cheap proxy that says where a
// rounding can beat another before anything is evaluated.
//
// Item names: a `sweep --rounding-choice` job measures its bare types ("Q4_K") at its base
// rounding (imatrix when the sweep has an imatrix, else plain) and the alternatives as
// "<type>+<rounding>" ("Q4_K+gptq", "Q4_K+plain"); plan reads both.
//
// Proxy: the output error of a tensor's rounding on its calibration inputs, Σ_rows e H eᵀ
// with e = w − q the rounding error of a row and H = Σ xᵀx its --gptq input Hessian (what
// GPTQ minimizes), or, for a tensor without a Hessian, Σ imp·e² with its imatrix entry
// (Σ e² without one). Measured on at most kProxyRows rows spread evenly over the tensor (rows
// round independently, also under GPTQ), so its cost stays a fraction of one item's.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/ggml_type.h"
#include "formats/recipe.h"

namespace quantlens {

class GptqRounding;
class Imatrix;
struct TensorInfo;

inline constexpr int64_t kProxyRows = 256;

// "Q4_K+gptq"; the bare type name for nullopt.
std::string rounded_type_name(GgmlType type, std::optional<Rounding> rounding);
// "Q4_K" → (Q4_K, nullopt); "Q4_K+gptq" → (Q4_K, gptq); nullopt when not a type name, or
// with an unknown rounding.
std::optional<std::pair<GgmlType, std::optional<Rounding>>> parse_rounded_type(
    const std::string& name);

// The rounding of a rounding-choice sweep's bare items.
inline Rounding base_rounding(bool has_imatrix) {
    return has_imatrix ? Rounding::imatrix : Rounding::plain;
}

// What one tensor's rounding uses: the importance for its block parameters and GPTQ.
struct RoundingInputs {
    const Imatrix* imatrix = nullptr;  // the importance the quantizer sees (nullptr: none)
    const GptqRounding* gptq = nullptr;
};
// The inputs of `rounding` given the sweep's or quantize's own (either may be nullptr).
RoundingInputs rounding_inputs(Rounding rounding, const Imatrix* imatrix, const GptqRounding* gptq);

// Whether `rounding` writes `t` at `written` differently from the base and can be done: gptq
// needs a GPTQ that covers it (2-D, a matmul input, a GPTQ type); plain needs a type that
// does not require importance and an imatrix entry for `t` (else plain is what imatrix does).
bool rounding_applies(const TensorInfo& t, GgmlType written, Rounding rounding,
                      const Imatrix* imatrix, const GptqRounding* gptq);

// The proxy above for a 2-D tensor `t` (values `original`, n_rows × n_per_row) rounded to
// `written` with `rounding`; `hessian` is the tensor's H (n_per_row²) or empty.
double rounding_proxy_error(const TensorInfo& t, const std::vector<float>& original,
                            GgmlType written, Rounding rounding, const Imatrix* imatrix,
                            const GptqRounding* gptq, const std::vector<double>& hessian);

}  // namespace quantlens
