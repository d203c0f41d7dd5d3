// Test helper (header-only): the output error a Hessian measures, for the GPTQ tests.
#pragma once

#include <cblas.h>

#include <cstdint>
#include <vector>

namespace quantlens::test_support {

// Σ_r d_r H d_rᵀ for d: (rows, n) row-major and H: (n, n) symmetric (upper triangle read),
// in double: the squared output error ‖X dᵀ‖²_F on the inputs X behind H = XᵀX.
template <typename T>
double hessian_quad_form(const std::vector<double>& h, const T* d, int64_t rows, int64_t n) {
    std::vector<double> dd(d, d + rows * n), dh(static_cast<size_t>(rows * n));
    cblas_dsymm(CblasRowMajor, CblasRight, CblasUpper, static_cast<int>(rows), static_cast<int>(n),
                1.0, h.data(), static_cast<int>(n), dd.data(), static_cast<int>(n), 0.0, dh.data(),
                static_cast<int>(n));
    double s = 0;
    for (size_t i = 0; i < dd.size(); ++i) s += dd[i] * dh[i];
    return s;
}

}  // namespace quantlens::test_support
