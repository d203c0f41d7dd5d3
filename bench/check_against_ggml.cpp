// Bit-compatibility check of quant/vec_dot.h against ggml-cpu's own dot products, linked
// from a llama.cpp build (not part of the CMake build: it needs llama.cpp's shared libraries).
// For each covered type, 300 random weight rows and activation rows: the activation bytes
// from quantize_row_q8_K/q8_0/q8_1 against quantize_act_row, and the dot products' bits.
//
//   cmake --build build --target ql_quant ql_core
//   g++ -O2 -std=c++20 -Isrc bench/check_against_ggml.cpp build/libql_quant.a build/libql_core.a \
//       -lfmt -L$LLAMA/build/bin -lggml-cpu -lggml-base -Wl,-rpath,$LLAMA/build/bin -lpthread \
//       -o /tmp/check_against_ggml && /tmp/check_against_ggml
//
// ggml's functions are declared here by their C signatures (ggml-cpu-quants.h of early 2025).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>
#include "core/ggml_type.h"
#include "core/half.h"
#include "quant/vec_dot.h"
extern "C" {
typedef void (*vd_t)(int, float*, size_t, const void*, size_t, const void*, size_t, int);
void quantize_row_q8_K(const float*, void*, int64_t);
void quantize_row_q8_0(const float*, void*, int64_t);
void quantize_row_q8_1(const float*, void*, int64_t);
#define D(t) \
    void ggml_vec_dot_##t(int, float*, size_t, const void*, size_t, const void*, size_t, int)
D(q4_K_q8_K);
D(q6_K_q8_K);
D(q2_K_q8_K);
D(q3_K_q8_K);
D(q5_K_q8_K);
D(iq2_xxs_q8_K);
D(iq2_xs_q8_K);
D(iq2_s_q8_K);
D(iq3_xxs_q8_K);
D(iq3_s_q8_K);
D(iq1_s_q8_K);
D(iq1_m_q8_K);
D(tq2_0_q8_K);
D(tq1_0_q8_K);
D(iq4_xs_q8_K);
D(q4_0_q8_0);
D(q8_0_q8_0);
D(q5_0_q8_0);
D(iq4_nl_q8_0);
D(q4_1_q8_1);
D(q5_1_q8_1);
void ggml_cpu_init(void);
struct traits {
    void* from_float;
    vd_t vec_dot;
    int vec_dot_type;
    int64_t nrows;
};
const traits* ggml_get_type_traits_cpu(int type);
void ggml_fp32_to_bf16_row(const float*, uint16_t*, int64_t);
void ggml_fp32_to_fp16_row(const float*, uint16_t*, int64_t);
}
using namespace quantlens;
struct T {
    GgmlType t;
    vd_t f;
    int act;
    std::vector<size_t> halves;
};
int main() {
    ggml_cpu_init();
    const T types[] = {
        {GgmlType::Q4_K, ggml_vec_dot_q4_K_q8_K, 2, {0, 2}},
        {GgmlType::Q6_K, ggml_vec_dot_q6_K_q8_K, 2, {208}},
        {GgmlType::Q2_K, ggml_vec_dot_q2_K_q8_K, 2, {80, 82}},
        {GgmlType::Q3_K, ggml_vec_dot_q3_K_q8_K, 2, {108}},
        {GgmlType::Q5_K, ggml_vec_dot_q5_K_q8_K, 2, {0, 2}},
        {GgmlType::IQ2_XXS, ggml_vec_dot_iq2_xxs_q8_K, 2, {0}},
        {GgmlType::IQ2_XS, ggml_vec_dot_iq2_xs_q8_K, 2, {0}},
        {GgmlType::IQ2_S, ggml_vec_dot_iq2_s_q8_K, 2, {0}},
        {GgmlType::IQ3_XXS, ggml_vec_dot_iq3_xxs_q8_K, 2, {0}},
        {GgmlType::IQ3_S, ggml_vec_dot_iq3_s_q8_K, 2, {0}},
        {GgmlType::IQ1_S, ggml_vec_dot_iq1_s_q8_K, 2, {0}},
        {GgmlType::IQ1_M, ggml_vec_dot_iq1_m_q8_K, 2, {}},
        {GgmlType::TQ2_0, ggml_vec_dot_tq2_0_q8_K, 2, {64}},
        {GgmlType::TQ1_0, ggml_vec_dot_tq1_0_q8_K, 2, {52}},
        {GgmlType::IQ4_XS, ggml_vec_dot_iq4_xs_q8_K, 2, {0}},
        {GgmlType::Q4_0, ggml_vec_dot_q4_0_q8_0, 0, {0}},
        {GgmlType::Q8_0, ggml_vec_dot_q8_0_q8_0, 0, {0}},
        {GgmlType::Q5_0, ggml_vec_dot_q5_0_q8_0, 0, {0}},
        {GgmlType::IQ4_NL, ggml_vec_dot_iq4_nl_q8_0, 0, {0}},
        {GgmlType::Q4_1, ggml_vec_dot_q4_1_q8_1, 1, {0, 2}},
        {GgmlType::Q5_1, ggml_vec_dot_q5_1_q8_1, 1, {0, 2}},
    };
    std::mt19937 rng(5);
    std::normal_distribution<float> nd(0, 1);
    std::uniform_real_distribution<float> sd(-0.02f, 0.02f);
    for (int ft : {1, 30}) {  // F16, BF16 through ggml's type traits
        const GgmlType gt = ft == 1 ? GgmlType::F16 : GgmlType::BF16;
        int mism = 0;
        for (int trial = 0; trial < 300; ++trial) {
            const int64_t n = 32 * 64 + (trial % 40);
            std::vector<uint16_t> w(n), yb(n);
            std::vector<float> wf(n), x(n);
            for (auto& v : wf) v = nd(rng) * 0.05f;
            for (auto& v : x) v = nd(rng);
            if (ft == 1)
                ggml_fp32_to_fp16_row(wf.data(), w.data(), n),
                    ggml_fp32_to_fp16_row(x.data(), yb.data(), n);
            else
                ggml_fp32_to_bf16_row(wf.data(), w.data(), n),
                    ggml_fp32_to_bf16_row(x.data(), yb.data(), n);
            std::vector<uint8_t> a(vec_dot::act_row_size(gt, n));
            vec_dot::quantize_act_row(gt, x.data(), a.data(), n);
            float ours = vec_dot::dot(gt, w.data(), a.data(), n), theirs;
            ggml_get_type_traits_cpu(ft)->vec_dot(n, &theirs, 0, w.data(), 0, yb.data(), 0, 1);
            if (ours != vec_dot::dot_ref(gt, w.data(), a.data(), n)) printf("  fast != ref\n");
            uint32_t u1, u2;
            memcpy(&u1, &ours, 4);
            memcpy(&u2, &theirs, 4);
            if (u1 != u2) ++mism;
        }
        printf("%-8s dot bits differ in %3d/300\n", ft == 1 ? "F16" : "BF16", mism);
    }
    for (const T& t : types) {
        // Q8_0-family types: an odd block count, so ggml's two-block loops run their tail
        const int64_t n = t.act == 2 ? 256 * 8 : 32 * 65;
        const auto& info = ggml_type_info(t.t);
        int mism = 0, actmism = 0;
        double maxrel = 0;
        for (int trial = 0; trial < 300; ++trial) {
            std::vector<uint8_t> w(ggml_row_size(t.t, n));
            for (auto& b : w) b = rng();
            for (size_t blk = 0; blk < w.size() / info.bytes_per_block; ++blk)
                for (size_t off : t.halves) {
                    uint16_t h = f32_to_f16(sd(rng));
                    memcpy(w.data() + blk * info.bytes_per_block + off, &h, 2);
                }
            if (t.t == GgmlType::IQ1_M)  // F16 scale = top nibbles of the four scale words
                for (size_t blk = 0; blk < w.size() / info.bytes_per_block; ++blk) {
                    const uint16_t h = f32_to_f16(sd(rng));
                    for (int k = 0; k < 4; ++k) {
                        uint8_t& byte = w[blk * info.bytes_per_block + 48 + 2 * k + 1];
                        byte = static_cast<uint8_t>((byte & 0x0F) | (((h >> (4 * k)) & 0xF) << 4));
                    }
                }
            std::vector<float> x(n);
            for (auto& v : x) v = nd(rng) * (trial % 3 ? 1.f : 300.f);
            std::vector<uint8_t> a1(vec_dot::act_row_size(t.t, n)), a2(a1.size());
            vec_dot::quantize_act_row(t.t, x.data(), a1.data(), n);
            if (t.act == 2)
                quantize_row_q8_K(x.data(), a2.data(), n);
            else if (t.act == 0)
                quantize_row_q8_0(x.data(), a2.data(), n);
            else
                quantize_row_q8_1(x.data(), a2.data(), n);
            if (memcmp(a1.data(), a2.data(), a1.size())) ++actmism;
            float ours = vec_dot::dot(t.t, w.data(), a2.data(), n),
                  ref = vec_dot::dot_ref(t.t, w.data(), a2.data(), n), theirs;
            t.f(n, &theirs, 0, w.data(), 0, a2.data(), 0, 1);
            uint32_t u1, u2;
            memcpy(&u1, &ours, 4);
            memcpy(&u2, &theirs, 4);
            if (u1 != u2) {
                ++mism;
                double r = std::abs((double)ours - theirs) / (std::abs((double)theirs) + 1e-30);
                if (r > maxrel) maxrel = r;
            }
            if (ours != ref) printf("  fast != ref!\n");
        }
        printf("%-8s act bytes differ in %3d/300, dot bits differ in %3d/300 (max rel %.2e)\n",
               std::string(ggml_type_display_name(t.t)).c_str(), actmism, mism, maxrel);
    }
}
