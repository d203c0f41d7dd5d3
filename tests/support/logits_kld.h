// Test helper (header-only): mean KL divergence between two runs' logits, in double, for the
// tests that bound how far one engine path drifts from another.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace quantlens::test_support {

// Mean over rows of V logits of KL(p ‖ q), p and q the softmaxes of the two rows.
inline double mean_kld(const std::vector<float>& p_logits, const std::vector<float>& q_logits,
                       int64_t V) {
    const int64_t rows = static_cast<int64_t>(p_logits.size()) / V;
    double total = 0;
    for (int64_t r = 0; r < rows; ++r) {
        const float* p = p_logits.data() + r * V;
        const float* q = q_logits.data() + r * V;
        double mp = p[0], mq = q[0];
        for (int64_t v = 1; v < V; ++v)
            mp = std::max<double>(mp, p[v]), mq = std::max<double>(mq, q[v]);
        double zp = 0, zq = 0;
        for (int64_t v = 0; v < V; ++v) zp += std::exp(p[v] - mp), zq += std::exp(q[v] - mq);
        double kl = 0;
        for (int64_t v = 0; v < V; ++v) {
            const double lp = p[v] - mp - std::log(zp), lq = q[v] - mq - std::log(zq);
            kl += std::exp(lp) * (lp - lq);
        }
        total += kl;
    }
    return total / static_cast<double>(rows);
}

}  // namespace quantlens::test_support
