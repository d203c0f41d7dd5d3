// The blocked CPU attention both fast paths run: attention_forward (kernels.h) and
// attention_sinks_forward (layers/attention_sinks.h). One task per (sequence, head, block of
// kQueryBlock query rows) computes by sgemm only the scores of the keys j0..i1 the block can
// see (causal, and within the window), turns each row's valid scores s[lo, hi) into
// probabilities, and multiplies them into V by a second sgemm. What differs between the two
// is where a row's softmax starts, which `row_start` gives (see blocked_attention).
// Internal to the engine: included by kernels.cpp and layers/attention_sinks.cpp only.
#pragma once

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "core/half.h"
#include "core/parallel.h"
#include "engine/kernels.h"

namespace quantlens {

constexpr int64_t kAttentionQueryBlock = 64;  // query rows per task (one sgemm pair each)

// row_start(s, lo, hi, h) prepares row s's valid scores s[lo, hi) of head h in place
// (soft-capping) and returns {the maximum the softmax subtracts, the sum it starts from} (a
// sink adds its own exp(sink − max) to the sum). The row is then exp(s − max) / sum, rounded
// to F16 when p.f16_probs, and zero outside [lo, hi).
template <typename RowStart>
void blocked_attention(float* out, const float* q, const float* k, const float* v, int64_t B,
                       int64_t T, int64_t H, int64_t KV, int64_t D, const AttentionParams& p,
                       const RowStart& row_start) {
    constexpr int64_t kQueryBlock = kAttentionQueryBlock;
    const int64_t group = H / KV;
    const int64_t n_blocks = (T + kQueryBlock - 1) / kQueryBlock;
    const float scale = p.scale > 0 ? p.scale : 1.0f / std::sqrt(static_cast<float>(D));
    const int ldq = static_cast<int>(H * D), ldkv = static_cast<int>(KV * D);
    // One task per (sequence, head, query block): keys j0..i1 only, so the causal half of the
    // score matrix (and, with a window, the keys no row of the block sees) is never computed.
    parallel_for(static_cast<size_t>(B * H * n_blocks), [&](size_t begin, size_t end) {
        std::vector<float> scores(kQueryBlock * T);  // [rows, keys]
        for (size_t task = begin; task < end; ++task) {
            const int64_t blk = static_cast<int64_t>(task) % n_blocks;
            const int64_t h = (static_cast<int64_t>(task) / n_blocks) % H;
            const int64_t b = static_cast<int64_t>(task) / (n_blocks * H);
            const int64_t i0 = blk * kQueryBlock, i1 = std::min(T, i0 + kQueryBlock);
            const int64_t j0 = p.window > 0 ? std::max<int64_t>(0, i0 - p.window + 1) : 0;
            const int64_t rows = i1 - i0, keys = i1 - j0;
            const float* qb = q + ((b * T + i0) * H + h) * D;
            const float* kb = k + ((b * T + j0) * KV + h / group) * D;
            const float* vb = v + ((b * T + j0) * KV + h / group) * D;
            float* ob = out + ((b * T + i0) * H + h) * D;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows),
                        static_cast<int>(keys), static_cast<int>(D), scale, qb, ldq, kb, ldkv, 0.0f,
                        scores.data(), static_cast<int>(keys));
            for (int64_t r = 0; r < rows; ++r) {
                float* s = scores.data() + r * keys;
                const int64_t i = i0 + r;
                // Valid keys j0 + [lo, hi): causal j ≤ i, windowed i − j < window.
                const int64_t hi = i - j0 + 1;
                const int64_t lo = p.window > 0 ? std::max<int64_t>(0, i - p.window + 1 - j0) : 0;
                const auto [mx, sum0] = row_start(s, lo, hi, h);
                float sum = sum0;
                for (int64_t j = lo; j < hi; ++j) {
                    s[j] = std::exp(s[j] - mx);
                    sum += s[j];
                }
                const float inv = 1.0f / sum;
                for (int64_t j = lo; j < hi; ++j) s[j] *= inv;
                if (p.f16_probs)
                    for (int64_t j = lo; j < hi; ++j) s[j] = round_to_f16(s[j]);
                for (int64_t j = 0; j < lo; ++j) s[j] = 0.0f;
                for (int64_t j = hi; j < keys; ++j) s[j] = 0.0f;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows),
                        static_cast<int>(D), static_cast<int>(keys), 1.0f, scores.data(),
                        static_cast<int>(keys), vb, ldkv, 0.0f, ob, ldq);
        }
    });
}

// The double-precision specification both fast paths are tested against (attention_forward_ref,
// attention_sinks_forward_ref): every query row's softmax over its visible keys, with a sink
// per head when `sinks` is given (nullptr: none), soft-capped by p.softcap.
inline void reference_attention(float* out, const float* q, const float* k, const float* v,
                                const float* sinks, int64_t B, int64_t T, int64_t H, int64_t KV,
                                int64_t D, const AttentionParams& prm) {
    const int64_t group = H / KV;
    const double scale =
        prm.scale > 0 ? static_cast<double>(prm.scale) : 1.0 / std::sqrt(static_cast<double>(D));
    std::vector<double> p(static_cast<size_t>(T));
    for (int64_t b = 0; b < B; ++b) {
        for (int64_t h = 0; h < H; ++h) {
            const int64_t kvh = h / group;
            for (int64_t i = 0; i < T; ++i) {
                const float* qi = q + ((b * T + i) * H + h) * D;
                const int64_t first = prm.window > 0 ? std::max<int64_t>(0, i - prm.window + 1) : 0;
                double mx = sinks ? static_cast<double>(sinks[h]) : -1e300;
                for (int64_t j = first; j <= i; ++j) {
                    const float* kj = k + ((b * T + j) * KV + kvh) * D;
                    double dot = 0.0;
                    for (int64_t d = 0; d < D; ++d) dot += static_cast<double>(qi[d]) * kj[d];
                    p[j] = dot * scale;
                    if (prm.softcap > 0) p[j] = prm.softcap * std::tanh(p[j] / prm.softcap);
                    mx = std::max(mx, p[j]);
                }
                double sum = sinks ? std::exp(static_cast<double>(sinks[h]) - mx) : 0.0;
                for (int64_t j = first; j <= i; ++j) sum += (p[j] = std::exp(p[j] - mx));
                float* oi = out + ((b * T + i) * H + h) * D;
                for (int64_t d = 0; d < D; ++d) {
                    double acc = 0.0;
                    for (int64_t j = first; j <= i; ++j)
                        acc += p[j] * v[((b * T + j) * KV + kvh) * D + d];
                    oi[d] = static_cast<float>(acc / sum);
                }
            }
        }
    }
}

}  // namespace quantlens
