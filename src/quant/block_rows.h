// The row loops block formats' quantize_rows_<t> and dequantize_row_<t> (kernels.h) share,
// and the macros that define such an entry point in one line. Rows of n_per_row weights are cut
// into blocks of kWeights, quantized in order into consecutive Blocks (row-major, as ggml lays them
// out); each block gets the importance of its own columns, or nullptr without an imatrix. The order
// and the importance offsets are ggml's, which the golden-byte tests hold.
#pragma once

#include <cstdint>

namespace quantlens::kernels {

// fn(const float* x, const float* qw_or_null, Block& y) quantizes one block.
template <typename Block, int64_t kWeights, typename Fn>
void for_each_block(const float* src, void* dst, int64_t n_rows, int64_t n_per_row,
                    const float* importance, Fn fn) {
    const int64_t nb = n_per_row / kWeights;
    auto* y = static_cast<Block*>(dst);
    for (int64_t r = 0; r < n_rows; ++r)
        for (int64_t b = 0; b < nb; ++b)
            fn(src + r * n_per_row + b * kWeights, importance ? importance + b * kWeights : nullptr,
               y[r * nb + b]);
}

// fn(const Block& x, float* y) writes one block's kWeights floats; n is a multiple of them.
template <typename Block, int64_t kWeights, typename Fn>
void for_each_block_out(const void* src, float* y, int64_t n, Fn fn) {
    const auto* x = static_cast<const Block*>(src);
    for (int64_t i = 0; i < n / kWeights; ++i) fn(x[i], y + i * kWeights);
}

}  // namespace quantlens::kernels

// Defines kernels.h's quantize_rows_<t> as for_each_block over the block function given
// (a function or lambda taking (x, qw, Block&)).
#define QL_QUANTIZE_ROWS_BY_BLOCK(t, Block, kWeights, ...)                                     \
    void quantize_rows_##t(const float* src, void* dst, int64_t n_rows, int64_t n_per_row,     \
                           const float* importance) {                                          \
        for_each_block<Block, kWeights>(src, dst, n_rows, n_per_row, importance, __VA_ARGS__); \
    }

// Defines kernels.h's dequantize_row_<t> as for_each_block_out over the block function given.
#define QL_DEQUANTIZE_ROW_BY_BLOCK(t, Block, kWeights, ...)          \
    void dequantize_row_##t(const void* src, float* y, int64_t n) {  \
        for_each_block_out<Block, kWeights>(src, y, n, __VA_ARGS__); \
    }

// Both entry points of a format whose blocks need no more than the block functions.
#define QL_BLOCK_KERNELS(t, Block, kWeights, quantize_block, dequantize_block) \
    QL_QUANTIZE_ROWS_BY_BLOCK(t, Block, kWeights, quantize_block)              \
    QL_DEQUANTIZE_ROW_BY_BLOCK(t, Block, kWeights, dequantize_block)
