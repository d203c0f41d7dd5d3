// GPTQ's own formats (core/gptq_format.h) applied to a model: which tensors a GPTQ
// checkpoint quantizes, the sweep units that match how vLLM loads them, and each tensor's
// values as the checkpoint decodes them (quant/gptq_pack.h), with GPTQ error feedback where
// Hessians were collected (analysis/write/gptq_rounding.h) and plain rounding otherwise.
//
// Quantized: the 2-D Linear weights of the blocks (attention q/k/v/o, FFN gate/up/down, a
// shared expert's). Kept in 16-bit and excluded from the export: the embedding, lm_head,
// the MoE router (`mlp.gate`) and shared router, norms, biases, and stacked experts (one
// tensor per layer here, many Linears in a checkpoint: not covered yet).
// Units: per layer, q/k/v form one unit and gate/up another (vLLM fuses them into
// qkv_proj and gate_up_proj, which take one format); every other tensor is its own unit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/gptq_format.h"

namespace quantlens {

class GptqRounding;
class Model;
struct TensorInfo;

bool gptq_quantizes(const TensorInfo& tensor);

// A unit of a GPTQ sweep and plan (the sweep turns these into its SweepUnits).
struct GptqUnit {
    std::string name;  // a tensor's name, or "blk.N.attn_qkv" / "blk.N.ffn_gate_up"
    int layer = -1;
    std::string role;
    std::vector<std::string> tensors;
    int64_t n_params = 0;
};
std::vector<GptqUnit> gptq_units(const Model& model);

// The values of `tensor` (w: its original values, out × in in ggml layout) as a checkpoint
// of `format` decodes them, and the checkpoint bytes of the module. gptq: Hessians, or null
// for plain rounding (also used for a tensor without a Hessian). Throws Error naming the
// tensor when its shape cannot be stored.
struct GptqFakeQuant {
    std::vector<float> values;
    uint64_t bytes = 0;
};
GptqFakeQuant gptq_fake_quant(const TensorInfo& tensor, const std::vector<float>& w,
                              const GptqFormat& format, const GptqRounding* gptq, bool act_order);

// Bytes of the tensors a GPTQ checkpoint keeps in 16 bits (every tensor gptq_quantizes()
// refuses), the fixed part of its size.
uint64_t gptq_unquantized_bytes(const Model& model);

}  // namespace quantlens
