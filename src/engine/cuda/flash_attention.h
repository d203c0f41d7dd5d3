// Causal attention without materialized scores (the CUDA engine's fast path): per query tile,
// key tiles stream through shared memory and an online softmax keeps a running max and sum, so
// neither the [T × T] f32 scores nor the 16-bit probabilities of every head reach global memory.
// For an 8B model at T = 512 those are 0.8 GB written and read per layer, and causal masking
// halves the products.
//
// Numerics: Q·Kᵀ and P·V on tensor cores from F16 inputs with f32 accumulation, the softmax in
// f32. Probabilities are rounded to F16 before P·V as the materialized path rounds them, but
// unnormalized (normalized once at the end), so results differ from that path in the last bits
// of F16 (tests: logits against the materialized path and the CPU engine).
#pragma once

#include <cstdint>

#include "engine/cuda/cuda_kernels.h"

namespace quantlens::cuda {

// F16 storage and head_dim 64 or 128, on a device with tensor cores (sm_70+); other cases take
// the materialized path.
bool flash_attention_supports(Dtype dt, int64_t head_dim);

// out[b*T + t, h, :] = softmax(q[b*T + t, h, :] · k[b*T + s, h / (H/KV), :]ᵀ · scale, s ≤ t)
//                      · v[b*T + s, h / (H/KV), :]
// q, out: [B*T, H, D]; k, v: [B*T, KV, D]; all F16, row-major, on the current stream.
void launch_flash_attention(const void* q, const void* k, const void* v, void* out, int64_t B,
                            int64_t T, int64_t H, int64_t KV, int64_t D, float scale);

}  // namespace quantlens::cuda
