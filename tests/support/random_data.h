// Test helper (header-only): seeded random inputs for kernel tests and the relative error
// they are compared by, so each kernel test file does not carry its own copy.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace quantlens::test_support {

// n normal(0, scale) floats from a fixed seed: the same inputs on every run.
inline std::vector<float> random_normal(size_t n, uint32_t seed, float scale = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng);
    return v;
}

// max |a - b| / max |b|: `b` is the reference.
inline float max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
    float max_ref = 0.0f, max_diff = 0.0f;
    for (size_t i = 0; i < a.size(); ++i) {
        max_ref = std::max(max_ref, std::fabs(b[i]));
        max_diff = std::max(max_diff, std::fabs(a[i] - b[i]));
    }
    return max_diff / max_ref;
}

}  // namespace quantlens::test_support
