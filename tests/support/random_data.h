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

// The kernel tests' inputs: random_normal under its usual name there.
inline std::vector<float> random_vec(size_t n, uint32_t seed, float scale = 1.0f) {
    return random_normal(n, seed, scale);
}

// sgemm reorders float sums; against a double-accumulated reference the error grows like
// sqrt(K)·eps·|x||w|. With K ≤ 512 and unit-scale data, 1e-4 relative is comfortable.
constexpr float kSgemmRelTol = 1e-4f;

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
