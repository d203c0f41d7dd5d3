// Search structures over the IQ lattices, built once on first use from the generated grid
// tables: each grid point as small odd integers (2*level + 1), a map from a packed vector of
// levels to its grid index, and for every vector that is not on the grid the list of its
// nearest grid points (ggml's iq2xs_init_impl / iq3xs_init_impl produce the same lists, in
// the same order, which the quantizers' tie-breaking depends on). Thread-safe.
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

#include "quant/block_rows.h"
#include "quant/iq_common.h"

namespace quantlens::kernels::iq {

// Iq3s stays last: iq_grids.cpp counts the kinds by it.
enum class GridKind { Iq2xxs, Iq2xs, Iq2s, Iq1s, Iq3xxs, Iq3s };

struct IqGrid {
    int n_points = 0;            // grid entries
    int dim = 0;                 // coordinates per entry: 8 (IQ2/IQ1) or 4 (IQ3)
    int bits = 0;                // bits per coordinate in a packed level vector
    std::vector<int8_t> points;  // n_points * dim values, each 2*level + 1
    std::vector<float> fpoints;  // the same values as floats (exact), for the error loops
    std::vector<int32_t> map;    // packed levels → grid index, or -(offset+1) into neighbours
    std::vector<uint16_t> neighbours;  // at offset: count, then that many grid indices

    const int8_t* point(int index) const { return points.data() + index * dim; }
    const float* fpoint(int index) const { return fpoints.data() + index * dim; }
    // Neighbour list (count first) of a packed level vector that is not on the grid.
    const uint16_t* neighbours_of(int packed) const {
        return neighbours.data() + (-map[packed] - 1);
    }
};

const IqGrid& iq_grid(GridKind kind);

// Rounds one group (Dim == g.dim values, all >= 0) to lattice levels l = round((id*x - 1)/2) in
// [0, n_levels), i.e. to the odd multiples (2l+1)/id; a vector that is not on the grid is
// replaced by the neighbour with the least waux-weighted error at `scale`. Writes the chosen
// point's levels to L and returns its grid index; on_grid says whether rounding hit it.
template <int Dim>
inline int snap_to_grid(const IqGrid& g, int n_levels, const float* xval, const float* waux,
                        float id, float scale, int8_t* L, bool* on_grid) {
    int packed = 0;
    for (int i = 0; i < Dim; ++i) {
        const int l = std::max(0, std::min(n_levels - 1, nearest_int(0.5f * (id * xval[i] - 1))));
        L[i] = static_cast<int8_t>(l);
        packed |= l << (g.bits * i);
    }
    int index = g.map[packed];
    *on_grid = index >= 0;
    if (index < 0) {
        const uint16_t* nb = g.neighbours_of(packed);
        float best_d2 = std::numeric_limits<float>::max();
        for (int j = 1; j <= nb[0]; ++j) {
            const float* p = g.fpoint(nb[j]);
            float d2 = 0;
            for (int i = 0; i < Dim; ++i) {
                const float q = p[i];
                const float diff = scale * q - xval[i];
                d2 += waux[i] * diff * diff;
            }
            if (d2 < best_d2) {
                best_d2 = d2;
                index = nb[j];
            }
        }
        QL_ASSERT(index >= 0);
        const int8_t* p = g.point(index);
        for (int i = 0; i < Dim; ++i) L[i] = static_cast<int8_t>((p[i] - 1) / 2);
    }
    return index;
}

}  // namespace quantlens::kernels::iq

// Defines kernels.h's quantize_rows_<t> for a lattice i-quant: block_fn(grid, x, qw, Block*)
// over for_each_block's super-blocks with the type's grid. A type that only exists with an
// imatrix names itself in `imatrix_required` ("IQ1_S") and refuses to run without one;
// nullptr otherwise.
#define QL_IQ_QUANTIZE_ROWS(t, Block, grid_kind, imatrix_required, block_fn)                    \
    void quantize_rows_##t(const float* src, void* dst, int64_t n_rows, int64_t n_per_row,      \
                           const float* importance) {                                           \
        if (const char* required = imatrix_required) require_importance(importance, required);  \
        const IqGrid& grid = iq_grid(grid_kind);                                                \
        for_each_block<Block, QK_K>(                                                            \
            src, dst, n_rows, n_per_row, importance,                                            \
            [&grid](const float* x, const float* qw, Block& y) { block_fn(grid, x, qw, &y); }); \
    }

// Both entry points of a lattice i-quant: QL_IQ_QUANTIZE_ROWS, and dequantize_row_<t> by
// super-block (dequantize_block(const Block&, float* y)).
#define QL_IQ_KERNELS(t, Block, grid_kind, imatrix_required, quantize_block, dequantize_block) \
    QL_IQ_QUANTIZE_ROWS(t, Block, grid_kind, imatrix_required, quantize_block)                 \
    QL_DEQUANTIZE_ROW_BY_BLOCK(t, Block, QK_K, dequantize_block)
