// GPU fake quantization (quantize → dequantize into the 16-bit storage type) for the sweep's
// types without importance: Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K (fake_quant.cu), IQ4_XS and
// IQ3_S (fake_quant_iq.cu).
//
// Each kernel is a thread-per-sub-block port of the CPU reference path (quant/kquants.cpp,
// quant/scale_search.cpp: ggml's `quantize_row_*_ref` scale searches, sub-block scales rounded
// against the super-block maximum, requantization, dequantization; quant/iq4.cpp and
// quant/iq3.cpp with iq_grids.h's lattice search for the i-quants), compiled without fused
// multiply-adds so every float operation rounds as on the CPU. Deviations from the bit-exact
// CPU path: (1) the input is the stored 16-bit original, not the f32 one (identical when the
// model's weights are themselves BF16, or F16 with F16 storage); (2) the dequantized values
// are rounded to the 16-bit storage type (relative error ≤ 2^-9 for BF16, 2^-12 for F16).
// With importance (an imatrix entry) the kernels port the importance paths instead
// (quant/kquants.cpp's *_imat, iq4.cpp and iq3.cpp with qw), with the same bit-exactness;
// Q8_0 ignores importance as ggml does. Other types use the CPU path. IQ3_S uploads its
// lattice tables (75 KB) to the current device on first use.
#pragma once

#include <cstdint>

#include "core/ggml_type.h"
#include "engine/cuda/cuda_kernels.h"

namespace quantlens::cuda {

// True when `type` has a GPU kernel and its block divides n_per_row.
bool gpu_fake_quant_supported(GgmlType type, int64_t n_per_row);
// Per-column importance of a tensor of stacked matrices (experts): `values` (device) holds
// n_mat × n_per_row floats, matrix m covering elements [m·mat_elems, (m+1)·mat_elems).
struct FakeQuantImportance {
    const float* values = nullptr;
    int64_t n_per_row = 0;
    int64_t mat_elems = 0;  // rows per matrix × n_per_row
};

// dst[n] ← dequantize(quantize(src[n])) for n = n_rows * n_per_row contiguous values
// (device pointers, both in `dt`), through the importance path when `importance` is given.
// Fails (CUDA error) on an unsupported type or length or an inconsistent importance layout.
void launch_fake_quant(GgmlType type, const void* src, void* dst, Dtype dt, int64_t n,
                       const FakeQuantImportance* importance = nullptr);

}  // namespace quantlens::cuda
