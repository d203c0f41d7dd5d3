// The converter's rearrangements of Gated DeltaNet tensors (see deltanet_layout.h).
#include "model/deltanet_layout.h"

#include <cmath>
#include <numeric>

#include "core/error.h"

namespace quantlens {

namespace {

std::vector<int64_t> identity(int64_t n, int64_t from = 0) {
    std::vector<int64_t> v(static_cast<size_t>(n));
    std::iota(v.begin(), v.end(), from);
    return v;
}

// Indices [offset, offset + nv·w) of value heads in tiled order: new head j·nk + g takes old
// head g·r + j (r = nv / nk), each `w` wide.
std::vector<int64_t> tiled_heads(const ModelConfig& c, int64_t w, int64_t offset) {
    const int64_t nk = c.ssm_k_heads, r = c.ssm_v_heads / c.ssm_k_heads;
    std::vector<int64_t> out;
    out.reserve(static_cast<size_t>(c.ssm_v_heads * w));
    for (int64_t j = 0; j < r; ++j)
        for (int64_t g = 0; g < nk; ++g)
            for (int64_t i = 0; i < w; ++i) out.push_back(offset + (g * r + j) * w + i);
    return out;
}

int64_t product(const std::vector<int64_t>& v, size_t from) {
    int64_t p = 1;
    for (size_t i = from; i < v.size(); ++i) p *= v[i];
    return p;
}

}  // namespace

std::optional<HfGather> deltanet_hf_gather(const ModelConfig& c, const std::string& gguf,
                                           const std::string& hf,
                                           const std::vector<int64_t>& shape) {
    QL_ASSERT(c.is_hybrid() && !shape.empty());
    const int64_t nk = c.ssm_k_heads, nv = c.ssm_v_heads, dk = c.ssm_k_dim, dv = c.ssm_v_dim;
    const int64_t r = nv / nk, qk = 2 * nk * dk;
    const bool tiled = c.ssm_v_tiled && nv != nk;  // Qwen3.5's converter reorders only then
    const int64_t rows = shape[0], cols = product(shape, 1);
    HfGather g;
    auto matrix_ne = [&](int64_t out_rows) { g.ne = {cols, out_rows}; };
    if (hf == "linear_attn.in_proj_qkvz") {  // per q/k head g: [q dk | k dk | v r·dv | z r·dv]
        const int64_t P = 2 * dk + 2 * r * dv;
        const bool gate = gguf == "attn_gate";
        auto part = [&](int64_t off, int64_t w) {
            for (int64_t h = 0; h < nk; ++h)
                for (int64_t i = 0; i < w; ++i) g.rows.push_back(h * P + off + i);
        };
        if (gate) {
            part(2 * dk + r * dv, r * dv);
        } else {
            part(0, dk);
            part(dk, dk);
            part(2 * dk, r * dv);
        }
        matrix_ne(static_cast<int64_t>(g.rows.size()));
        return g;
    }
    if (hf == "linear_attn.conv1d") {  // [channels, 1, K] → ne [K, channels]
        if (tiled) {
            g.rows = identity(qk);
            const auto v = tiled_heads(c, dv, qk);
            g.rows.insert(g.rows.end(), v.begin(), v.end());
        }
        g.ne = {cols, rows};
        return g;
    }
    if (hf == "linear_attn.A_log") {
        g.neg_exp = true;
        if (tiled) g.cols = tiled_heads(c, 1, 0);
        g.ne = {rows};
        return g;
    }
    if (!tiled) return std::nullopt;
    if (hf == "linear_attn.in_proj_qkv") {
        g.rows = identity(qk);
        const auto v = tiled_heads(c, dv, qk);
        g.rows.insert(g.rows.end(), v.begin(), v.end());
    } else if (hf == "linear_attn.in_proj_z") {
        g.rows = tiled_heads(c, dv, 0);
    } else if (hf == "linear_attn.in_proj_b" || hf == "linear_attn.in_proj_a") {
        g.rows = tiled_heads(c, 1, 0);
    } else if (hf == "linear_attn.dt_bias") {
        g.cols = tiled_heads(c, 1, 0);
        g.ne = {rows};
        return g;
    } else if (hf == "linear_attn.out_proj") {
        g.cols = tiled_heads(c, dv, 0);
    } else {
        return std::nullopt;
    }
    g.ne = {cols, rows};
    return g;
}

void apply_hf_gather(const HfGather& g, const float* in, int64_t in_rows, int64_t in_cols,
                     float* out) {
    // A 1-D tensor is one row of in_rows elements.
    if (g.ne.size() == 1) {
        in_cols = in_rows * in_cols;
        in_rows = 1;
    }
    const auto R = g.rows.empty() ? in_rows : static_cast<int64_t>(g.rows.size());
    const auto C = g.cols.empty() ? in_cols : static_cast<int64_t>(g.cols.size());
    for (int64_t r = 0; r < R; ++r) {
        const float* src = in + (g.rows.empty() ? r : g.rows[r]) * in_cols;
        float* dst = out + r * C;
        for (int64_t k = 0; k < C; ++k) {
            const float x = src[g.cols.empty() ? k : g.cols[k]];
            dst[k] = g.neg_exp ? -std::exp(x) : x;
        }
    }
}

}  // namespace quantlens
