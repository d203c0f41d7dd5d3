// gpt-oss's expert activation: with g = min(gate, limit) and u = clamp(up, −limit, limit),
// out = (u + 1) · g · σ(alpha · g). gate[n] and up[n] are the de-interleaved halves of
// transformers' gate_up projection (columns 2i and 2i + 1); out may alias gate.
// clamped_swiglu_forward_ref computes the same in double precision (the specification).
#pragma once

#include <cstdint>

namespace quantlens {

void clamped_swiglu_forward(float* out, const float* gate, const float* up, int64_t n, float limit,
                            float alpha);
void clamped_swiglu_forward_ref(float* out, const float* gate, const float* up, int64_t n,
                                double limit, double alpha);

}  // namespace quantlens
