// GPTQ's own integer formats (core/gptq_format.h), quantized and packed exactly as
// GPTQModel writes a checkpoint with checkpoint_format "gptq" (AutoGPTQ's v1 layout), so the
// values we measure are the values a GPTQ kernel decodes.
//
// Parameters per output row and group of input columns x (GPTQModel's Quantizer.find_params,
// in float): lo = min(min x, 0), hi = max(max x, 0); symmetric: hi = max(|lo|, hi) and
// lo = −hi when lo < 0; lo = hi = 0 becomes lo = −1, hi = 1; scale = (hi − lo) / maxq
// (maxq = 2^bits − 1); zero = 2^(bits−1) when symmetric, else round(−lo / scale).
// Code q = clamp(round(x / scale) + zero, 0, maxq) (round half to even, as torch.round).
// Stored: scale as f16; the code as pack() recomputes it, round((scale·(q − zero) + zero·scale)
// / f16(scale)), which is q itself since |q|·2⁻¹¹ < ½ (clamped, so a field never spills);
// zero − 1 in qzeros. Decoded (what verify and the sweep evaluate): f16(scale) · (q − zero).
//
// One deliberate difference: the v1 layout stores zero − 1, so an asymmetric zero of 0 (a
// group with no weight below −scale/2) cannot be stored (AutoGPTQ's pack() writes −1 as
// 0xFFFFFFFF, which spills into the neighbouring fields of the word). Asymmetric zeros are
// therefore at least 1 here, which the checkpoint then decodes exactly.
//
// Packing (qweight along the input dimension, qzeros along the output dimension): 32
// consecutive codes c_0..c_31 fill BITS words as one little-endian bit stream, c_k at bit
// BITS·k (for 3 bits, codes 10 and 21 straddle words). Words are stored as int32.
//
// g_idx: the group of each input column, i / GROUP; with act order (desc_act) the columns
// are processed in descending diag H and grouped in that order, g_idx[perm[j]] = j / GROUP.
// Per channel (GROUP −1): one group, g_idx all 0.
//
// GPTQ error feedback (gptq_pack_gptq) follows GPTQModel's loop with the factor of
// quant/gptq.h (damping, act order, Cholesky of H⁻¹): a group's parameters are found when
// the sweep reaches its first column, from the error-updated weights (per channel: from the
// original row, before the sweep); each column's error (w − scale·(q − zero), fp32 scale, as
// GPTQ propagates it) divided by U_jj is pushed onto the later columns. Propagation runs in
// double, so it is not bit-exact with GPTQModel's GPU float arithmetic; plain rounding is.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/gptq_format.h"

namespace quantlens {

struct GptqFactor;  // quant/gptq.h

// One Linear (OUT × IN weights) as the checkpoint holds it; shapes as in core/gptq_format.h.
struct GptqPacked {
    GptqFormat format;
    int64_t out = 0, in = 0;
    std::vector<int32_t> qweight;  // (in / 32 · bits, out) row-major
    std::vector<int32_t> qzeros;   // (groups, out / 32 · bits)
    std::vector<uint16_t> scales;  // (groups, out), f16 bits
    std::vector<int32_t> g_idx;    // (in)
    bool desc_act = false;         // g_idx follows an act-order permutation
};

// Plain rounding (round to nearest on each group's parameters): the baseline and the
// reference twin. w: OUT × IN floats, row-major (the HF/ggml layout, one row per output).
// Throws Error when the shape cannot be stored (check_gptq_shape; `tensor` names it).
GptqPacked gptq_pack_rtn(const GptqFormat& format, const float* w, int64_t out, int64_t in,
                         const std::string& tensor = "weight");
// GPTQ rounding with error feedback; factor.n must equal IN (factor.perm non-empty: act
// order, desc_act set).
GptqPacked gptq_pack_gptq(const GptqFormat& format, const float* w, int64_t out, int64_t in,
                          const GptqFactor& factor, const std::string& tensor = "weight");
// The weight the checkpoint decodes to: OUT × IN floats, row-major.
void gptq_unpack(const GptqPacked& packed, float* w);
// Code of weight (o, i) and zero of (group, o), read back from the packed words.
int gptq_packed_code(const GptqPacked& packed, int64_t o, int64_t i);
int gptq_packed_zero(const GptqPacked& packed, int64_t group, int64_t o);
// Total bytes of the four tensors (equals gptq_module_bytes).
uint64_t gptq_packed_bytes(const GptqPacked& packed);

}  // namespace quantlens
