// GPU dequantization of GGUF blocks, for weights the CUDA engine keeps on the GPU in their
// quantized form (cuda_engine.h's CudaEngineOptions::quantized_storage): each GEMM dequantizes
// the rows it needs into a tile of the storage type right before it runs.
//
// Promises:
//  - Every value equals the CPU's dequantize (quant/quant.h) bit for bit: each weight is the
//    CPU reference's expression for it, operation by operation, compiled without fused
//    multiply-adds. F16 and BF16 outputs are that float rounded to
//    nearest even, as launch_f32_to_16 rounds the CPU's dequantized values.
//  - Types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS, the
//    lattice i-quants IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S (their grids are
//    uploaded to each device once, 33 KB), MXFP4 and TQ2_0 (gpu_dequant_supported). TQ1_0 has
//    no kernel: the engine stores such weights dequantized, as before.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/ggml_type.h"
#include "engine/cuda/cuda_kernels.h"

namespace quantlens::cuda {

bool gpu_dequant_supported(GgmlType type);

// dst[i, :] (n_rows rows of n_per_row values in `dt`: F32, F16 or BF16) ← the dequantized row
// (rows ? rows[i] : row0 + i) of `src` (device; rows of row_bytes bytes of `type`'s blocks).
// `rows` (device) gathers, e.g. embedding rows by token id; its ids must be valid rows. `dst`
// 16-byte aligned; n_per_row < 2^31.
void launch_dequantize_rows(GgmlType type, const void* src, size_t row_bytes, int64_t n_per_row,
                            const int32_t* rows, int64_t row0, int64_t n_rows, void* dst, Dtype dt);

}  // namespace quantlens::cuda
