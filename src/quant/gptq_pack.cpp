// GPTQ formats quantized and packed as GPTQModel's checkpoint stores them: see gptq_pack.h.
#include "quant/gptq_pack.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"
#include "core/half.h"
#include "core/parallel.h"
#include "quant/gptq.h"

namespace quantlens {
namespace {

struct GroupParams {
    float scale = 0;  // fp32, as GPTQ quantizes and propagates
    int zero = 0;
};

// GPTQModel's Quantizer.find_params over x[0, n) (float, as torch computes it).
GroupParams find_params(const GptqFormat& f, const float* x, int64_t n, int64_t stride = 1) {
    const int maxq = (1 << f.bits) - 1;
    float lo = 0, hi = 0;
    for (int64_t k = 0; k < n; ++k) {
        lo = std::min(lo, x[k * stride]);
        hi = std::max(hi, x[k * stride]);
    }
    if (f.sym) {
        hi = std::max(std::fabs(lo), hi);
        if (lo < 0) lo = -hi;
    }
    if (lo == 0 && hi == 0) lo = -1, hi = 1;
    GroupParams p;
    p.scale = (hi - lo) / static_cast<float>(maxq);
    if (f.sym) {
        p.zero = (maxq + 1) / 2;
    } else {
        p.zero = static_cast<int>(std::nearbyint(-lo / p.scale));
        // The v1 layout stores zero − 1: a zero of 0 cannot be stored (see gptq_pack.h).
        p.zero = std::clamp(p.zero, 1, maxq);
    }
    return p;
}

int quantize_code(const GptqFormat& f, const GroupParams& p, float x) {
    const int maxq = (1 << f.bits) - 1;
    const float q = std::nearbyint(x / p.scale) + static_cast<float>(p.zero);
    return static_cast<int>(std::clamp(q, 0.0f, static_cast<float>(maxq)));
}

float dequantize_fp32(const GroupParams& p, int q) {
    return p.scale * static_cast<float>(q - p.zero);
}

// The code pack() stores for GPTQ's value scale·(q − zero): recomputed against the f16
// scale, which gives q back (|q|·2⁻¹¹ < ½); clamped so a field never spills.
int packed_code(const GptqFormat& f, const GroupParams& p, int q) {
    const float scale_h = f16_to_f32(f32_to_f16(p.scale));
    if (!(scale_h > 0) || !std::isfinite(scale_h)) return q;
    const float deq = dequantize_fp32(p, q);
    const float zero_scaled = static_cast<float>(p.zero) * p.scale;
    const float c = std::nearbyint((deq + zero_scaled) / scale_h);
    return static_cast<int>(std::clamp(c, 0.0f, static_cast<float>((1 << f.bits) - 1)));
}

// Writes `value` (bits wide) as element k of a little-endian stream of 32-bit words whose
// consecutive words are `stride` apart.
void put_field(int32_t* words, int64_t stride, int bits, int64_t k, uint32_t value) {
    const int64_t bit = static_cast<int64_t>(bits) * k;
    const int64_t w = bit / 32;
    const int shift = static_cast<int>(bit % 32);
    auto* word = reinterpret_cast<uint32_t*>(words + w * stride);
    *word |= value << shift;
    if (shift + bits > 32) {
        auto* next = reinterpret_cast<uint32_t*>(words + (w + 1) * stride);
        *next |= value >> (32 - shift);
    }
}

uint32_t get_field(const int32_t* words, int64_t stride, int bits, int64_t k) {
    const int64_t bit = static_cast<int64_t>(bits) * k;
    const int64_t w = bit / 32;
    const int shift = static_cast<int>(bit % 32);
    uint64_t v = static_cast<uint32_t>(words[w * stride]) >> shift;
    if (shift + bits > 32)
        v |= static_cast<uint64_t>(static_cast<uint32_t>(words[(w + 1) * stride])) << (32 - shift);
    return static_cast<uint32_t>(v) & ((1u << bits) - 1u);
}

// Codes (OUT × IN, by weight position), parameters (groups × OUT) and g_idx into the layout.
GptqPacked pack(const GptqFormat& f, int64_t out, int64_t in, const std::vector<uint8_t>& codes,
                const std::vector<GroupParams>& params, std::vector<int32_t> g_idx, bool desc_act) {
    GptqPacked p;
    p.format = f;
    p.out = out;
    p.in = in;
    p.desc_act = desc_act;
    const int64_t groups = gptq_group_count(f, in);
    const int64_t zero_words = out / 32 * f.bits;
    p.qweight.assign(static_cast<size_t>(in / 32 * f.bits * out), 0);
    p.qzeros.assign(static_cast<size_t>(groups * zero_words), 0);
    p.scales.resize(static_cast<size_t>(groups * out));
    p.g_idx = std::move(g_idx);
    // qweight: column o of the (in/32·bits, out) matrix holds row o's codes along the input.
    for (int64_t o = 0; o < out; ++o)
        for (int64_t i = 0; i < in; ++i)
            put_field(p.qweight.data() + o, out, f.bits, i, codes[static_cast<size_t>(o * in + i)]);
    for (int64_t g = 0; g < groups; ++g)
        for (int64_t o = 0; o < out; ++o) {
            const GroupParams& gp = params[static_cast<size_t>(g * out + o)];
            p.scales[static_cast<size_t>(g * out + o)] = f32_to_f16(gp.scale);
            put_field(p.qzeros.data() + g * zero_words, 1, f.bits, o,
                      static_cast<uint32_t>(gp.zero - 1));
        }
    return p;
}

void check_weights(const float* w, int64_t n, const std::string& tensor) {
    for (int64_t k = 0; k < n; ++k)
        QL_CHECK(std::isfinite(w[k]), "gptq: tensor '{}': weight {} is {}", tensor, k, w[k]);
}

}  // namespace

GptqPacked gptq_pack_rtn(const GptqFormat& f, const float* w, int64_t out, int64_t in,
                         const std::string& tensor) {
    check_gptq_shape(f, out, in, tensor);
    check_weights(w, out * in, tensor);
    const int64_t groups = gptq_group_count(f, in), gs = in / groups;
    std::vector<uint8_t> codes(static_cast<size_t>(out * in));
    std::vector<GroupParams> params(static_cast<size_t>(groups * out));
    std::vector<int32_t> g_idx(static_cast<size_t>(in));
    for (int64_t i = 0; i < in; ++i) g_idx[static_cast<size_t>(i)] = static_cast<int32_t>(i / gs);
    parallel_for(static_cast<size_t>(out), [&](size_t o0, size_t o1) {
        for (auto o = static_cast<int64_t>(o0); o < static_cast<int64_t>(o1); ++o)
            for (int64_t g = 0; g < groups; ++g) {
                const float* x = w + o * in + g * gs;
                const GroupParams p = find_params(f, x, gs);
                params[static_cast<size_t>(g * out + o)] = p;
                for (int64_t k = 0; k < gs; ++k)
                    codes[static_cast<size_t>(o * in + g * gs + k)] =
                        static_cast<uint8_t>(packed_code(f, p, quantize_code(f, p, x[k])));
            }
    });
    return pack(f, out, in, codes, params, std::move(g_idx), false);
}

GptqPacked gptq_pack_gptq(const GptqFormat& f, const float* w, int64_t out, int64_t in,
                          const GptqFactor& factor, const std::string& tensor) {
    check_gptq_shape(f, out, in, tensor);
    check_weights(w, out * in, tensor);
    QL_CHECK(factor.n == in, "gptq: tensor '{}': Hessian factor of size {} for {} input columns",
             tensor, factor.n, in);
    const int64_t n = in;
    const int64_t groups = gptq_group_count(f, in), gs = in / groups;
    const bool act_order = !factor.perm.empty();
    auto col = [&](int64_t j) { return act_order ? factor.perm[static_cast<size_t>(j)] : j; };
    std::vector<uint8_t> codes(static_cast<size_t>(out * in));
    std::vector<GroupParams> params(static_cast<size_t>(groups * out));
    std::vector<int32_t> g_idx(static_cast<size_t>(in));
    for (int64_t j = 0; j < n; ++j)
        g_idx[static_cast<size_t>(col(j))] = static_cast<int32_t>(j / gs);
    const double* u = factor.u.data();
    parallel_for(static_cast<size_t>(out), [&](size_t o0, size_t o1) {
        std::vector<double> W(static_cast<size_t>(n));  // row o in sweep order
        std::vector<float> xg(static_cast<size_t>(gs));
        for (auto o = static_cast<int64_t>(o0); o < static_cast<int64_t>(o1); ++o) {
            for (int64_t j = 0; j < n; ++j) W[static_cast<size_t>(j)] = w[o * in + col(j)];
            GroupParams p;
            if (f.group < 0) {  // per channel: from the original row, before the sweep
                p = find_params(f, w + o * in, in);
                params[static_cast<size_t>(o)] = p;
            }
            for (int64_t j = 0; j < n; ++j) {
                if (f.group > 0 && j % gs == 0) {
                    for (int64_t k = 0; k < gs; ++k)
                        xg[static_cast<size_t>(k)] =
                            static_cast<float>(W[static_cast<size_t>(j + k)]);
                    p = find_params(f, xg.data(), gs);
                    params[static_cast<size_t>((j / gs) * out + o)] = p;
                }
                const double wj = W[static_cast<size_t>(j)];
                const int q = quantize_code(f, p, static_cast<float>(wj));
                codes[static_cast<size_t>(o * in + col(j))] =
                    static_cast<uint8_t>(packed_code(f, p, q));
                const double* uj = u + j * n;
                const double e = (wj - static_cast<double>(dequantize_fp32(p, q))) / uj[j];
                if (e == 0) continue;
                double* wr = W.data();
                for (int64_t k = j + 1; k < n; ++k) wr[k] -= e * uj[k];
            }
        }
    });
    return pack(f, out, in, codes, params, std::move(g_idx), act_order);
}

int gptq_packed_code(const GptqPacked& p, int64_t o, int64_t i) {
    return static_cast<int>(get_field(p.qweight.data() + o, p.out, p.format.bits, i));
}

int gptq_packed_zero(const GptqPacked& p, int64_t group, int64_t o) {
    const int64_t zero_words = p.out / 32 * p.format.bits;
    return static_cast<int>(get_field(p.qzeros.data() + group * zero_words, 1, p.format.bits, o)) +
           1;
}

void gptq_unpack(const GptqPacked& p, float* w) {
    parallel_for(static_cast<size_t>(p.out), [&](size_t o0, size_t o1) {
        for (auto o = static_cast<int64_t>(o0); o < static_cast<int64_t>(o1); ++o)
            for (int64_t i = 0; i < p.in; ++i) {
                const int64_t g = p.g_idx[static_cast<size_t>(i)];
                const float scale = f16_to_f32(p.scales[static_cast<size_t>(g * p.out + o)]);
                const int zero = gptq_packed_zero(p, g, o);
                w[o * p.in + i] = scale * static_cast<float>(gptq_packed_code(p, o, i) - zero);
            }
    });
}

uint64_t gptq_packed_bytes(const GptqPacked& p) {
    return 4 * (p.qweight.size() + p.qzeros.size() + p.g_idx.size()) + 2 * p.scales.size();
}

}  // namespace quantlens
