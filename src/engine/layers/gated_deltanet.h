// Kernels of the Gated DeltaNet (linear attention) layer of Qwen3-Next and Qwen3.5, llm.c
// style (see engine/kernels.h for the conventions). B = batch, T = time, nk = q/k heads,
// nv = value heads (a multiple of nk), dk / dv = their head sizes, K = conv kernel.
//
// The recurrence per value head h, with q/k head kh(h) (grouped h / (nv/nk), or tiled
// h % nk) and a state S[dk][dv] starting at 0 for each sequence:
//     S ← exp(g_t)·S;   u_t = β_t·(v_t − Sᵀk_t);   S ← S + k_t·u_tᵀ;   o_t = Sᵀq_t
// (q/k L2-normalized, q scaled by 1/sqrt(dk) beforehand). gated_delta_rule_ref runs it
// step by step: the specification. gated_delta_rule_chunked is the parallel form over
// chunks of `chunk` steps (the WY form: within a chunk the u_t solve a unit lower-triangular
// system built from k·k products and cumulative decays, the outputs are a masked q·k
// product plus the entering state's contribution, and the state passes between chunks).
// Both accumulate in double; tests/engine/test_gated_deltanet.cpp compares them.
#pragma once

#include <cstdint>

namespace quantlens {

// transformers' l2norm epsilon for the DeltaNet's q and k (fla's), not the model's rms_norm_eps.
constexpr float kDeltaNetL2NormEps = 1e-6f;

// out[B, T, Ch] = silu(Σ_i w[c, i] · x[t − (K−1) + i, c]) with zeros before t = 0 of each
// sequence; w is ggml's ne [K, Ch] (row c holds channel c's K taps, oldest first).
void causal_conv1d_silu_forward(float* out, const float* x, const float* w, int64_t B, int64_t T,
                                int64_t Ch, int64_t K);

// x[N, D] in place: x · 1/sqrt(Σ x² + eps) per row (transformers' and fla's l2norm).
void l2norm_forward(float* x, int64_t N, int64_t D, float eps);

// out[N, D] = x / rms(x row, eps) · w[D] · silu(z[N, D]) (the DeltaNet's gated RMSNorm).
void gated_rmsnorm_forward(float* out, const float* x, const float* z, const float* w, int64_t N,
                           int64_t D, float eps);

struct DeltaRuleShape {
    int64_t B, T, nk, nv, dk, dv;
    bool v_tiled;  // value head h reads q/k head h % nk, else h / (nv / nk)
    int64_t k_head(int64_t h) const { return v_tiled ? h % nk : h / (nv / nk); }
};

// q/k[B, T, nk, dk], v[B, T, nv, dv], g/beta[B, T, nv] (g = log decay ≤ 0) → out[B, T, nv, dv].
void gated_delta_rule_ref(float* out, const float* q, const float* k, const float* v,
                          const float* g, const float* beta, const DeltaRuleShape& s);
void gated_delta_rule_chunked(float* out, const float* q, const float* k, const float* v,
                              const float* g, const float* beta, const DeltaRuleShape& s,
                              int64_t chunk = 64);

}  // namespace quantlens
