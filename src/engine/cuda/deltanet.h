// Kernels of the Gated DeltaNet hybrids' layers on the GPU (Qwen3-Next, Qwen3.5 dense and MoE):
// the CPU's engine/layers/gated_deltanet.h and hybrid_layer.cpp, operation by operation, on
// device pointers. Launches go to the default stream.
//
// Precision: the elementwise parts (conv, norms, gates) accumulate in double as the CPU does;
// the recurrence runs in F32 (the CPU's in double), so the two differ by F32 rounding only
// (tests/cuda/test_cuda_engine.cpp holds both recurrences to 1e-5 of the CPU reference).
#pragma once

#include <cstdint>

#include "engine/cuda/cuda_kernels.h"

namespace quantlens::cuda {

// out[N, CH] = silu(Σ_i w[c, i] · x[t − (K−1) + i, c]), zeros before t = 0 of each sequence of
// T; x rows hold ldx floats (the fused projection's output, channels 0..CH−1 first).
void launch_causal_conv1d_silu(float* out, const float* x, int64_t ldx, const float* w, int64_t N,
                               int64_t T, int64_t CH, int64_t K);

// x[n, h·D .. h·D + D) (rows of ldx floats, `heads` heads from column 0) ← x / sqrt(Σ x² + eps),
// then × scale in float (transformers' l2norm, then the query's 1/sqrt(dk)).
void launch_l2norm_heads(float* x, int64_t ldx, int64_t N, int64_t heads, int64_t D, float eps,
                         float scale);

// From the projected b and a (rows of ldba floats): beta[N, nv] = sigmoid(b), g[N, nv] =
// ssm_a[h] · softplus(a + dt_bias[h]). fused_ba: Qwen3-Next's ssm_ba columns, per q/k head its
// nv/nk value heads' b then their a; else b in columns 0..nv−1 and a in nv..2nv−1.
void launch_deltanet_gates(float* g, float* beta, const float* ba, int64_t ldba, const float* ssm_a,
                           const float* dt_bias, int64_t N, int64_t nk, int64_t nv, bool fused_ba);

// The gated delta rule (gated_deltanet.h's recurrence) for B sequences of T: q and k hold nk
// heads of dk from columns q_col / k_col of rows of ld_in floats, v nv heads of dv from v_col;
// g and beta [N, nv]; out[N, nv, dv]. v_tiled: value head h reads q/k head h % nk, else
// h / (nv / nk).
struct DeltaRuleArgs {
    const float* in;  // the conv output [N, ld_in]
    int64_t ld_in, q_col, k_col, v_col;
    const float *g, *beta;
    float* out;
    int64_t B, T, nk, nv, dk, dv;
    bool v_tiled;
};
// Whether a head's state and one chunk's work fit a thread block's shared memory on the current
// device (the engine refuses the model by name otherwise).
bool gated_delta_rule_fits(int64_t dk, int64_t dv);
// One thread block per (sequence, value head) walks the chunks of `chunk` steps in the WY form
// of gated_delta_rule_chunked, the state in shared memory. Throws naming the head sizes when
// the state does not fit a block's shared memory.
void launch_gated_delta_rule_chunked(const DeltaRuleArgs& a, int64_t chunk = 64);
// The reference twin: step by step, as gated_delta_rule_ref.
void launch_gated_delta_rule_sequential(const DeltaRuleArgs& a);

// out[n, h, :] (16-bit or F32) = o / rms(o[n, h, :], eps) · w · silu(z[n, h·dv ..]) with z in
// rows of ldz floats: the DeltaNet's gated RMSNorm, ssm_out's input.
void launch_gated_rmsnorm(void* out, Dtype dt, const float* o, const float* z, int64_t ldz,
                          const float* w, int64_t N, int64_t nv, int64_t dv, float eps);

// Gated attention (Qwen3-Next's full layers): qg[N, H, 2D | K and V columns] f32, the fused
// q|k|v projection whose q rows hold each head's query then its gate → qkv[N, (H + 2 KV) D]
// (the layout launch_qkv_post reads) and gate[N, H, D].
void launch_split_query_gate(float* qkv, float* gate, const float* qg, int64_t N, int64_t H,
                             int64_t KV, int64_t D);
// att[N, H·D] (storage type) ×= sigmoid(gate) in float.
void launch_sigmoid_gate(void* att, Dtype dt, const float* gate, int64_t n);

// The sigmoid-gated shared expert: h[n, :] += sigmoid(xn[n, :] · w) · y[n, :] (xn in the storage
// type, the dot in double then rounded to float as the CPU's linear).
void launch_gated_residual(float* h, const float* y, const void* xn, Dtype dt, const float* w,
                           int64_t N, int64_t C);

}  // namespace quantlens::cuda
