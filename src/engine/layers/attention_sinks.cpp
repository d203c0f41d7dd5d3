// Attention with sinks: see attention_sinks.h.
#include "engine/layers/attention_sinks.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "core/parallel.h"

namespace quantlens {

namespace {
constexpr int64_t kQueryBlock = 64;  // query rows per task (one sgemm pair each)
}

void attention_sinks_forward(float* out, const float* q, const float* k, const float* v,
                             const float* sinks, int64_t B, int64_t T, int64_t H, int64_t KV,
                             int64_t D, const AttentionParams& p) {
    QL_ASSERT(p.softcap == 0.0f);
    const int64_t group = H / KV;
    const int64_t n_blocks = (T + kQueryBlock - 1) / kQueryBlock;
    const float scale = p.scale > 0 ? p.scale : 1.0f / std::sqrt(static_cast<float>(D));
    const int ldq = static_cast<int>(H * D), ldkv = static_cast<int>(KV * D);
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
            const float sink = sinks[h];
            for (int64_t r = 0; r < rows; ++r) {
                float* s = scores.data() + r * keys;
                const int64_t i = i0 + r;
                const int64_t hi = i - j0 + 1;  // valid keys j0 + [lo, hi)
                const int64_t lo = p.window > 0 ? std::max<int64_t>(0, i - p.window + 1 - j0) : 0;
                float mx = sink;
                for (int64_t j = lo; j < hi; ++j) mx = std::max(mx, s[j]);
                float sum = std::exp(sink - mx);
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

void attention_sinks_forward_ref(float* out, const float* q, const float* k, const float* v,
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
                double mx = sinks[h];
                for (int64_t j = first; j <= i; ++j) {
                    const float* kj = k + ((b * T + j) * KV + kvh) * D;
                    double dot = 0.0;
                    for (int64_t d = 0; d < D; ++d) dot += static_cast<double>(qi[d]) * kj[d];
                    p[j] = dot * scale;
                    mx = std::max(mx, p[j]);
                }
                double sum = std::exp(static_cast<double>(sinks[h]) - mx);
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
