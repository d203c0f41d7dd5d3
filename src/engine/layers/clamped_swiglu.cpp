// gpt-oss's clamped SwiGLU: see clamped_swiglu.h.
#include "engine/layers/clamped_swiglu.h"

#include <algorithm>
#include <cmath>

namespace quantlens {

void clamped_swiglu_forward(float* out, const float* gate, const float* up, int64_t n, float limit,
                            float alpha) {
    for (int64_t i = 0; i < n; ++i) {
        const float g = std::min(gate[i], limit);
        const float u = std::clamp(up[i], -limit, limit);
        out[i] = (u + 1.0f) * (g / (1.0f + std::exp(-alpha * g)));
    }
}

void clamped_swiglu_forward_ref(float* out, const float* gate, const float* up, int64_t n,
                                double limit, double alpha) {
    for (int64_t i = 0; i < n; ++i) {
        const double g = std::min(static_cast<double>(gate[i]), limit);
        const double u = std::clamp(static_cast<double>(up[i]), -limit, limit);
        out[i] = static_cast<float>((u + 1.0) * g / (1.0 + std::exp(-alpha * g)));
    }
}

}  // namespace quantlens
