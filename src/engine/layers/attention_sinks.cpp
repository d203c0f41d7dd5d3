// Attention with sinks: see attention_sinks.h.
#include "engine/layers/attention_sinks.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "core/parallel.h"
#include "engine/blocked_attention.h"

namespace quantlens {

void attention_sinks_forward(float* out, const float* q, const float* k, const float* v,
                             const float* sinks, int64_t B, int64_t T, int64_t H, int64_t KV,
                             int64_t D, const AttentionParams& p) {
    QL_ASSERT(p.softcap == 0.0f);
    blocked_attention(out, q, k, v, B, T, H, KV, D, p,
                      [&](float* s, int64_t lo, int64_t hi, int64_t h) {
                          const float sink = sinks[h];
                          float mx = sink;
                          for (int64_t j = lo; j < hi; ++j) mx = std::max(mx, s[j]);
                          return std::pair{mx, std::exp(sink - mx)};
                      });
}

void attention_sinks_forward_ref(float* out, const float* q, const float* k, const float* v,
                                 const float* sinks, int64_t B, int64_t T, int64_t H, int64_t KV,
                                 int64_t D, const AttentionParams& prm) {
    reference_attention(out, q, k, v, sinks, B, T, H, KV, D, prm);
}

}  // namespace quantlens
