// Gated DeltaNet kernels (see gated_deltanet.h).
#include "engine/layers/gated_deltanet.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "core/parallel.h"

namespace quantlens {

namespace {

double silu(double x) {
    return x / (1.0 + std::exp(-x));
}

}  // namespace

void causal_conv1d_silu_forward(float* out, const float* x, const float* w, int64_t B, int64_t T,
                                int64_t Ch, int64_t K) {
    parallel_for(
        static_cast<size_t>(B * T),
        [&](size_t begin, size_t end) {
            for (size_t n = begin; n < end; ++n) {
                const int64_t b = static_cast<int64_t>(n) / T, t = static_cast<int64_t>(n) % T;
                float* o = out + n * Ch;
                for (int64_t c = 0; c < Ch; ++c) {
                    double acc = 0.0;
                    for (int64_t i = 0; i < K; ++i) {
                        const int64_t src = t - (K - 1) + i;
                        if (src >= 0)
                            acc += static_cast<double>(w[c * K + i]) * x[(b * T + src) * Ch + c];
                    }
                    o[c] = static_cast<float>(silu(acc));
                }
            }
        },
        16);
}

void l2norm_forward(float* x, int64_t N, int64_t D, float eps) {
    for (int64_t n = 0; n < N; ++n) {
        float* r = x + n * D;
        double ss = 0.0;
        for (int64_t d = 0; d < D; ++d) ss += static_cast<double>(r[d]) * r[d];
        const double inv = 1.0 / std::sqrt(ss + eps);
        for (int64_t d = 0; d < D; ++d) r[d] = static_cast<float>(r[d] * inv);
    }
}

void gated_rmsnorm_forward(float* out, const float* x, const float* z, const float* w, int64_t N,
                           int64_t D, float eps) {
    for (int64_t n = 0; n < N; ++n) {
        const float* r = x + n * D;
        double ss = 0.0;
        for (int64_t d = 0; d < D; ++d) ss += static_cast<double>(r[d]) * r[d];
        const double scale = 1.0 / std::sqrt(ss / D + eps);
        for (int64_t d = 0; d < D; ++d)
            out[n * D + d] = static_cast<float>(r[d] * scale * w[d] * silu(z[n * D + d]));
    }
}

namespace {

// Row pointers of one (sequence, value head) pair.
struct HeadView {
    const float *q, *k, *v, *g, *beta;
    float* out;
    int64_t qk_stride, v_stride, gb_stride;  // floats between consecutive time steps
};

HeadView head_view(float* out, const float* q, const float* k, const float* v, const float* g,
                   const float* beta, const DeltaRuleShape& s, int64_t b, int64_t h) {
    const int64_t kh = s.k_head(h);
    const int64_t base = b * s.T;
    return HeadView{q + (base * s.nk + kh) * s.dk,
                    k + (base * s.nk + kh) * s.dk,
                    v + (base * s.nv + h) * s.dv,
                    g + base * s.nv + h,
                    beta + base * s.nv + h,
                    out + (base * s.nv + h) * s.dv,
                    s.nk * s.dk,
                    s.nv * s.dv,
                    s.nv};
}

void for_each_head(const DeltaRuleShape& s, const std::function<void(int64_t, int64_t)>& body) {
    parallel_for(
        static_cast<size_t>(s.B * s.nv),
        [&](size_t begin, size_t end) {
            for (size_t i = begin; i < end; ++i)
                body(static_cast<int64_t>(i) / s.nv, static_cast<int64_t>(i) % s.nv);
        },
        1);
}

}  // namespace

void gated_delta_rule_ref(float* out, const float* q, const float* k, const float* v,
                          const float* g, const float* beta, const DeltaRuleShape& s) {
    const int64_t dk = s.dk, dv = s.dv;
    for_each_head(s, [&](int64_t b, int64_t h) {
        const HeadView hv = head_view(out, q, k, v, g, beta, s, b, h);
        std::vector<double> S(static_cast<size_t>(dk * dv), 0.0), u(static_cast<size_t>(dv));
        for (int64_t t = 0; t < s.T; ++t) {
            const float* kt = hv.k + t * hv.qk_stride;
            const float* qt = hv.q + t * hv.qk_stride;
            const float* vt = hv.v + t * hv.v_stride;
            const double decay = std::exp(static_cast<double>(hv.g[t * hv.gb_stride]));
            const double bt = hv.beta[t * hv.gb_stride];
            for (double& x : S) x *= decay;
            for (int64_t j = 0; j < dv; ++j) {
                double mem = 0.0;
                for (int64_t i = 0; i < dk; ++i) mem += S[i * dv + j] * kt[i];
                u[j] = bt * (vt[j] - mem);
            }
            for (int64_t i = 0; i < dk; ++i)
                for (int64_t j = 0; j < dv; ++j) S[i * dv + j] += kt[i] * u[j];
            float* ot = hv.out + t * hv.v_stride;
            for (int64_t j = 0; j < dv; ++j) {
                double o = 0.0;
                for (int64_t i = 0; i < dk; ++i) o += S[i * dv + j] * qt[i];
                ot[j] = static_cast<float>(o);
            }
        }
    });
}

void gated_delta_rule_chunked(float* out, const float* q, const float* k, const float* v,
                              const float* g, const float* beta, const DeltaRuleShape& s,
                              int64_t chunk) {
    const int64_t dk = s.dk, dv = s.dv;
    for_each_head(s, [&](int64_t b, int64_t h) {
        const HeadView hv = head_view(out, q, k, v, g, beta, s, b, h);
        std::vector<double> S(static_cast<size_t>(dk * dv), 0.0);  // state entering the chunk
        std::vector<double> G(chunk), kk(chunk * chunk), qk(chunk * chunk);
        std::vector<double> U(chunk * dv), O(chunk * dv);
        for (int64_t t0 = 0; t0 < s.T; t0 += chunk) {
            const int64_t L = std::min(chunk, s.T - t0);
            auto K = [&](int64_t i) { return hv.k + (t0 + i) * hv.qk_stride; };
            auto Q = [&](int64_t i) { return hv.q + (t0 + i) * hv.qk_stride; };
            double acc = 0.0;  // cumulative log decay within the chunk
            for (int64_t i = 0; i < L; ++i) G[i] = acc += hv.g[(t0 + i) * hv.gb_stride];
            for (int64_t i = 0; i < L; ++i)
                for (int64_t j = 0; j <= i; ++j) {
                    double a = 0.0, c = 0.0;
                    for (int64_t d = 0; d < dk; ++d) {
                        a += static_cast<double>(K(i)[d]) * K(j)[d];
                        c += static_cast<double>(Q(i)[d]) * K(j)[d];
                    }
                    kk[i * chunk + j] = a;
                    qk[i * chunk + j] = c;
                }
            // U = β(V − e^G·K S) − strictly-lower(β e^{G_i − G_j} k_i·k_j) U, row by row;
            // O = e^G·Q S (the entering state's part), completed below.
            for (int64_t i = 0; i < L; ++i) {
                const double eg = std::exp(G[i]), bi = hv.beta[(t0 + i) * hv.gb_stride];
                const float* vi = hv.v + (t0 + i) * hv.v_stride;
                double* ui = U.data() + i * dv;  // rows of S are contiguous: sweep them
                double* oi = O.data() + i * dv;
                for (int64_t j = 0; j < dv; ++j) ui[j] = vi[j], oi[j] = 0.0;
                for (int64_t d = 0; d < dk; ++d) {
                    const double kd = eg * K(i)[d], qd = eg * Q(i)[d];
                    const double* row = S.data() + d * dv;
                    for (int64_t j = 0; j < dv; ++j) {
                        ui[j] -= kd * row[j];
                        oi[j] += qd * row[j];
                    }
                }
                for (int64_t m = 0; m < i; ++m) {
                    const double a = std::exp(G[i] - G[m]) * kk[i * chunk + m];
                    for (int64_t j = 0; j < dv; ++j) U[i * dv + j] -= a * U[m * dv + j];
                }
                for (int64_t j = 0; j < dv; ++j) U[i * dv + j] *= bi;
            }
            for (int64_t i = 0; i < L; ++i) {
                for (int64_t m = 0; m <= i; ++m) {
                    const double a = std::exp(G[i] - G[m]) * qk[i * chunk + m];
                    for (int64_t j = 0; j < dv; ++j) O[i * dv + j] += a * U[m * dv + j];
                }
                float* oi = hv.out + (t0 + i) * hv.v_stride;
                for (int64_t j = 0; j < dv; ++j) oi[j] = static_cast<float>(O[i * dv + j]);
            }
            const double last = G[L - 1], e_last = std::exp(last);
            for (double& x : S) x *= e_last;
            for (int64_t m = 0; m < L; ++m) {
                const double a = std::exp(last - G[m]);
                for (int64_t d = 0; d < dk; ++d) {
                    const double kd = a * K(m)[d];
                    for (int64_t j = 0; j < dv; ++j) S[d * dv + j] += kd * U[m * dv + j];
                }
            }
        }
    });
}

}  // namespace quantlens
