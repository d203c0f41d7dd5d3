// Per-type reference kernels, one pair per block format, with ggml-compatible semantics:
//   quantize_rows_<t>(src, dst, n_rows, n_per_row, importance): rows of n_per_row floats →
//       n_rows * row_size bytes; importance = per-column weights (n_per_row) or nullptr.
//       Single-threaded; quant.cpp's dispatcher splits rows across threads.
//   dequantize_row_<t>(src, dst, n): n weights (a multiple of the block size) → floats.
// These are the `_ref` twins: scalar, deterministic, the definition of the format's bytes.
// Any faster path must be tested against them.
#pragma once

#include <cstdint>

// X(name): every block format, in ggml type-id order.
#define QL_QUANT_TYPES(X) \
    X(q4_0)               \
    X(q4_1)               \
    X(q5_0)               \
    X(q5_1)               \
    X(q8_0)               \
    X(q2_K)               \
    X(q3_K)               \
    X(q4_K)               \
    X(q5_K)               \
    X(q6_K)               \
    X(iq2_xxs)            \
    X(iq2_xs)             \
    X(iq3_xxs)            \
    X(iq1_s)              \
    X(iq4_nl)             \
    X(iq3_s)              \
    X(iq2_s)              \
    X(iq4_xs)             \
    X(iq1_m)              \
    X(tq1_0)              \
    X(tq2_0)              \
    X(mxfp4)              \
    X(nvfp4)              \
    X(q1_0)               \
    X(q2_0)

namespace quantlens::kernels {

#define QL_DECLARE_KERNELS(t)                                                              \
    void quantize_rows_##t(const float* src, void* dst, int64_t n_rows, int64_t n_per_row, \
                           const float* importance);                                       \
    void dequantize_row_##t(const void* src, float* dst, int64_t n);
QL_QUANT_TYPES(QL_DECLARE_KERNELS)
#undef QL_DECLARE_KERNELS

}  // namespace quantlens::kernels
