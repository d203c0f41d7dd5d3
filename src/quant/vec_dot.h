// Quantized dot products, as ggml's CPU backend computes a matrix product with a quantized
// (or F16/BF16) weight: the activation row is quantized to 8 bits per value (Q8_K blocks of
// 256 for K-quants, i-quants and TQ1_0/TQ2_0, Q8_0 blocks of 32 for Q4_0/Q5_0/Q8_0/IQ4_NL/MXFP4,
// Q8_1 for Q4_1/Q5_1; F16/BF16 for F16/BF16 weights, whose dots are ggml_vec_dot_f16/_bf16's four
// 8-lane accumulators), then each weight row meets it block by block in integer arithmetic,
// and the per-block integer sums are scaled and accumulated in float in ggml's x86 AVX2
// order: eight float lanes, lane k holding the integer sum of positions 4k..4k+3 of every
// 32-value chunk, accumulated with fused multiply-adds (block scale × lane sum), reduced at
// the end as ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)); where GCC fuses one of ggml's scalar
// "acc += a * b" lines (Q5_K's min term, IQ1_S's delta term) the twins fuse it too. Integer sums
// are exact in any order, so the float schedule is what makes results bit-compatible with
// ggml_vec_dot_<type>_q8_<K|0|1> of ggml's AVX2 build (checked against ggml-cpu itself by
// bench/check_against_ggml.cpp, every type but MXFP4, which the 2025-02 reference build predates;
// ggml's repacked/llamafile GEMM paths, when a build uses them for a type, sum the same integers in
// another float order: results then differ by float rounding only).
//
// Promises:
//  - dot_ref is the scalar reference twin of every covered type (plain loops, std::fma; the
//    i-quants' twins read integer weights and scales from detail's block decoders, which the
//    tests check against quant/'s dequantization);
//  - dot is the fast path (AVX2 when the CPU has AVX2, FMA and F16C, checked at run time;
//    four-row kernels for Q4_K, Q6_K, Q8_0 and F16; AVX-512 F+BW kernels for Q4_K and Q6_K
//    where the CPU has them, QUANTLENS_AVX512=0 declining), bit-identical to dot_ref
//    (tests/quant/test_vec_dot.cpp);
//  - quantize_act_row writes exactly what ggml's AVX2 build writes for the activation row
//    (Q8_0/Q8_1: d = amax/127 as F16, q = round-half-even(x·127/amax); Q8_K: ggml's
//    reference, largest magnitude ↦ −127, d = 1/iscale, 16-value bsums); 8-bit values stay
//    in [−127, 127], which the kernels' sign trick relies on;
//  - a type without a kernel (supported() false: NVFP4, F32, …) is never passed in:
//    callers keep their dequantize-to-float path for it.
// Assumes n is a multiple of the weight type's block size (checked once by the caller).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/ggml_type.h"

namespace quantlens::vec_dot {

// Whether a quantized dot product exists for weights of `type`.
bool supported(GgmlType type);
// The activation format ggml pairs with weights of `type` (Q8_0, Q8_1, Q8_K or F16).
GgmlType act_type(GgmlType type);
// Bytes of one quantized activation row of n values for weights of `type`.
size_t act_row_size(GgmlType type, int64_t n);
// x[n] → dst (act_row_size bytes) in act_type(type).
void quantize_act_row(GgmlType type, const float* x, void* dst, int64_t n);

// Σ w·x over n values: w = one weight row in `type`, act = the row from quantize_act_row.
float dot(GgmlType type, const void* w, const void* act, int64_t n);
float dot_ref(GgmlType type, const void* w, const void* act, int64_t n);
// Four activation rows `stride` bytes apart against one weight row: out[r] = dot(row r),
// bit for bit (a multi-row kernel where one exists: the weight is unpacked once).
void dot4(GgmlType type, const void* w, const void* act, size_t stride, int64_t n, float* out);

// ggml-cpu computes a product with ≥ 2 activation rows (a prompt) with llamafile's tinyBLAS
// instead of its dot products for F16/BF16 weights (n a multiple of 8, out_rows of 4) and for
// the Q8_0-paired Q4_0, Q5_0, Q8_0 and IQ4_NL. Its sums equal dot's for Q4_0/Q5_0/Q8_0; for
// F16/BF16 they run in one accumulator of eight lanes (lane = index mod 8, reduced as dot's
// lanes are) and for IQ4_NL in one accumulator over all blocks. gemm_order says whether a
// product of that shape differs from dot's order; gemm_dot (AVX2 for F16/BF16) and its twin
// gemm_dot_ref give one output of it. matmul uses them when it has ≥ 2 rows.
bool gemm_order(GgmlType type, int64_t n, int64_t out_rows);
float gemm_dot(GgmlType type, const void* w, const void* act, int64_t n);
float gemm_dot_ref(GgmlType type, const void* w, const void* act, int64_t n);

// Whether dot uses a vectorized kernel for `type` on this CPU (else it is dot_ref).
bool has_fast_path(GgmlType type);

// Whether every value of one weight row of n values in `type` is finite. For block types
// whose values are integers times F16 scales, only the scales are read (a finite scale
// gives finite values); other types are dequantized.
bool row_finite(GgmlType type, const void* row, int64_t n);
// Byte offsets of the F16 scales in a block of `type` (what row_finite reads); empty for a type
// whose scales are not F16 fields (F16, BF16, MXFP4's E8M0, IQ1_M's packed nibbles).
std::vector<size_t> half_scale_offsets(GgmlType type);

// Activation rows in the format weights of one type pair with (act_type): quantized once,
// then multiplied by every matrix that takes the same input (q/k/v, gate/up). The buffer
// keeps its capacity, so a holder reused across calls allocates only when inputs grow.
struct QuantizedRows {
    GgmlType act = GgmlType::F32;  // F32: nothing quantized yet
    int64_t rows = 0, cols = 0;
    size_t row_size = 0;  // act_row_size(weight type, cols)
    std::vector<uint8_t> data;
};
// This thread's reusable holder (one per thread: products on one thread run one at a time).
QuantizedRows& thread_rows();
// in[N, IN] → rows, for weights of `type` (rows are split over the thread pool).
void quantize_rows(GgmlType type, const float* in, int64_t N, int64_t IN, QuantizedRows& rows);

// out[N, OUT] = in · W[OUT, IN]ᵀ (+ bias[OUT] when not null), in = rows quantized for
// act_type(type) with IN = rows.cols, W = OUT rows of ggml_row_size(type, IN) bytes at
// `weight` (a GGUF tensor's data). Tiles of 16 output features are handed to the thread
// pool's workers one at a time (a worker slowed by a busy machine holds back one tile, not
// a share); each output is one dot(), or one gemm_dot() when N ≥ 2 and gemm_order holds
// (so the thread count never changes a result).
void matmul(float* out, const QuantizedRows& in, GgmlType type, const void* weight,
            const float* bias, int64_t OUT);
// The same with in[N, IN] quantized first (into thread_rows()).
void matmul(float* out, const float* in, GgmlType type, const void* weight, const float* bias,
            int64_t N, int64_t IN, int64_t OUT);

}  // namespace quantlens::vec_dot
