// GPTQ ("OPTQ", Frantar et al. 2022) inside the ggml block formats: the weights of a linear
// layer are rounded one input column at a time, left to right, and each column's rounding
// error is pushed onto the columns not yet rounded so that the layer's output X·Wᵀ moves as
// little as possible on the calibration inputs X (H = XᵀX, the input Hessian).
//
// What stays ggml: the bytes. When column j starts a ggml block (32 columns for Q8_0, 256
// for the K-quants), that block's parameters (super scale d, min dmin, sub-block scale and
// min codes) are chosen for every row by OUR bit-exact quantizer (quant.h) run on the
// current, error-updated weights of the block, with the importance slice; they are then
// fixed, and every column of the block is rounded to the nearest level of the grid those
// parameters define (Q4_K: d·sc·q − dmin·m, q ∈ [0, 15]; Q5_K q ∈ [0, 31]; Q6_K
// d·sc·(q − 32), q ∈ [0, 63]; Q3_K d·(sc − 32)·(q − 4), q ∈ [0, 7]; Q2_K d·sc·q − dmin·m,
// q ∈ [0, 3]; Q8_0 d·q, q ∈ [−127, 127]; IQ4_XS d·(ls − 32)·kvalues_iq4nl[q], q ∈ [0, 15]). The
// codes are packed into the exact ggml layout, so llama.cpp loads the file as any other of that
// type.
//
// Rounding rule per type (what ggml's quantizer itself does after fixing the block
// parameters, so a diagonal H, which propagates no error, gives bytes identical to
// quantize(); IQ4_XS alone comes close but not exact, see there):
//   K-quants: q = clamp(nearest_int((x + dmin·m) / (d·sc))) with the f16-rounded d, dmin
//             and the 6/4-bit sub-block codes; a sub-block whose step d·sc is 0 keeps the
//             quantizer's codes (every code decodes to the same value there).
//   Q8_0:     q = round(x / d') with d' = amax/127 of the block as the quantizer saw it, in
//             float, NOT the f16 d that is stored (ggml rounds Q8_0 against the unrounded
//             scale); clamped to ±127 for later columns that error feedback pushed past amax.
//   IQ4_XS:   q = nearest level of kvalues_iq4nl to x / (d·(ls − 32)) with the stored f16 d.
//             ggml re-picks against its unrounded super scale, which the bytes do not hold,
//             so here alone a diagonal H is not byte-exact: codes can differ at near-ties
//             (rare; the test bounds them), and every code is on the stored grid.
//
// Algorithm (per row independently; H is shared): H is damped (λ = damp · mean diag H on
// every diagonal entry; a column whose diagonal is 0 gets diagonal 1 first: its input was
// never seen, so it takes no error and passes none on, and keeps its plain rounding);
// U = upper Cholesky factor of H⁻¹ (computed as the inverse of the "reverse" Cholesky
// factor R of H = R·Rᵀ, R upper); columns are processed in lazy batches of `batch` columns:
//   e_j = (w_j − ŵ_j) / U_jj;  w_k −= e_j · U_jk  for k > j in the batch, then the batch's
//   errors are applied to all later columns at once.
// Act order (GptqOptions::act_order, off by default): columns in descending diag H, every
// block's parameters fixed up front by the plain quantizer on the original weights.
// Cost: n³/3 (factor, once per H) + 2·n_rows·n²/2 flops (updates), all in double.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/ggml_type.h"

namespace quantlens {

struct GptqOptions {
    double damp = 0.01;     // λ = damp × mean of H's diagonal, added to every diagonal entry
    int64_t batch = 128;    // lazy-batch width in columns
    bool propagate = true;  // false: no error feedback (plain rounding on fixed parameters)
    // Columns in descending order of H's diagonal ("act order"). Block parameters are then
    // fixed up front from the original weights (the plain quantizer's, "static groups"),
    // since a block's columns are no longer rounded together. Read by gptq_factor.
    bool act_order = false;
};

// The damped Hessian's inverse Cholesky factor, reusable for every weight that shares the
// input (and for several types): u is n × n row-major, upper triangular.
struct GptqFactor {
    int64_t n = 0;
    double damp_used = 0;       // λ actually added (raised ×10 per retry if H was not positive)
    std::vector<double> u;      // of the permuted H when act order
    std::vector<int64_t> perm;  // act order: column processed j-th; empty: identity
};

// hessian: n × n, row-major, symmetric (only the upper triangle is read), Σ xᵀx over
// calibration rows (any positive scale). Throws Error if H stays indefinite after damping.
GptqFactor gptq_factor(const double* hessian, int64_t n, const GptqOptions& o = {});

bool gptq_supports(GgmlType type);

// w: n_rows × n_per_row floats (ggml layout, ne[0] = n_per_row); dst: n_rows × row size
// bytes of `type`. importance: n_per_row floats (an imatrix column) or null, used only for
// the block parameters exactly as quantize() uses it. Returns bytes written. Throws Error
// naming the type when it is not supported, or when the shape does not fit the block.
size_t gptq_quantize(GgmlType type, const float* w, void* dst, int64_t n_rows, int64_t n_per_row,
                     const GptqFactor& factor, const float* importance, const GptqOptions& o = {});
size_t gptq_quantize(GgmlType type, const float* w, void* dst, int64_t n_rows, int64_t n_per_row,
                     const double* hessian, const float* importance, const GptqOptions& o = {});

}  // namespace quantlens
