// Causal grouped-query attention with attention sinks (gpt-oss): each head h has a learned
// logit sinks[h] that joins every query's softmax as one more column and is then dropped,
// so a query can put weight "nowhere" (its probabilities over real keys sum to below 1):
//   p_j = exp(s_j − m) / (Σ_j' exp(s_j' − m) + exp(sinks[h] − m)),  m = max(max_j s_j, sinks[h]).
// Shapes and masking as attention_forward (engine/kernels.h): q[B, T, H, D], k/v[B, T, KV, D]
// → out[B, T, H, D]; params.window limits keys to i − j < window; params.scale, f16_probs
// as there (soft-capping is not combined with sinks by any model and is refused by assert).
// attention_sinks_forward is the fast path (OpenBLAS per query block, as attention_forward);
// attention_sinks_forward_ref the plain double-precision specification it is tested against.
#pragma once

#include <cstdint>

#include "engine/kernels.h"

namespace quantlens {

void attention_sinks_forward(float* out, const float* q, const float* k, const float* v,
                             const float* sinks, int64_t B, int64_t T, int64_t H, int64_t KV,
                             int64_t D, const AttentionParams& params = {});
void attention_sinks_forward_ref(float* out, const float* q, const float* k, const float* v,
                                 const float* sinks, int64_t B, int64_t T, int64_t H, int64_t KV,
                                 int64_t D, const AttentionParams& params = {});

}  // namespace quantlens
