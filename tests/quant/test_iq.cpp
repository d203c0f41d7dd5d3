// Golden test of the i-quant, ternary, FP4 and 1/2-bit kernels against ggml's own output
// (golden-quants.gguf): for every input X and type T, quantizing X.src (with and without
// X.imatrix) must reproduce X.T[.imat].q byte for byte, and dequantizing those bytes must
// reproduce X.T[.imat].dq bit for bit. The kernels are called directly (kernels.h), so
// this does not depend on the dispatcher. A type whose kernel is missing fails loudly.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "quant/iq_grids.h"
#include "quant/kernels.h"
#include "quant/tables_generated.h"
#include "support/test_data.h"

namespace {

using quantlens::test_support::shared_dir;

using quantlens::GgufFile;
using quantlens::GgufTensorInfo;

const GgufFile& golden() {
    static const GgufFile file = GgufFile::open(shared_dir() + "/golden/golden-quants.gguf");
    return file;
}

using QuantizeFn = void (*)(const float*, void*, int64_t, int64_t, const float*);
using DequantizeFn = void (*)(const void*, float*, int64_t);

struct Kind {
    const char* name;  // as in the golden tensor names
    QuantizeFn quantize;
    DequantizeFn dequantize;
    int64_t block_size;
    size_t block_bytes;
    bool imatrix_only;  // ggml has no plain variant
};

namespace k = quantlens::kernels;
const Kind kKinds[] = {
    {"iq4_nl", k::quantize_rows_iq4_nl, k::dequantize_row_iq4_nl, 32, 18, false},
    {"iq4_xs", k::quantize_rows_iq4_xs, k::dequantize_row_iq4_xs, 256, 136, false},
    {"iq3_s", k::quantize_rows_iq3_s, k::dequantize_row_iq3_s, 256, 110, false},
    {"iq3_xxs", k::quantize_rows_iq3_xxs, k::dequantize_row_iq3_xxs, 256, 98, false},
    {"iq2_s", k::quantize_rows_iq2_s, k::dequantize_row_iq2_s, 256, 82, false},
    {"iq2_xs", k::quantize_rows_iq2_xs, k::dequantize_row_iq2_xs, 256, 74, true},
    {"iq2_xxs", k::quantize_rows_iq2_xxs, k::dequantize_row_iq2_xxs, 256, 66, true},
    {"iq1_s", k::quantize_rows_iq1_s, k::dequantize_row_iq1_s, 256, 50, true},
    {"iq1_m", k::quantize_rows_iq1_m, k::dequantize_row_iq1_m, 256, 56, false},
    {"tq1_0", k::quantize_rows_tq1_0, k::dequantize_row_tq1_0, 256, 54, false},
    {"tq2_0", k::quantize_rows_tq2_0, k::dequantize_row_tq2_0, 256, 66, false},
    {"mxfp4", k::quantize_rows_mxfp4, k::dequantize_row_mxfp4, 32, 17, false},
    {"nvfp4", k::quantize_rows_nvfp4, k::dequantize_row_nvfp4, 64, 36, false},
    {"q1_0", k::quantize_rows_q1_0, k::dequantize_row_q1_0, 128, 18, false},
    {"q2_0", k::quantize_rows_q2_0, k::dequantize_row_q2_0, 64, 18, false},
};

// Names the type in test output instead of dumping the struct's bytes.
void PrintTo(const Kind& kind, std::ostream* os) {
    *os << kind.name;
}

const char* const kInputs[] = {"real_ffn_down", "real_attn_q", "real_embed", "synthetic_edge"};

// Runs one golden case; returns an empty string on success, else what differed.
std::string run_case(const Kind& kind, const std::string& input, bool with_imatrix) {
    const GgufFile& g = golden();
    const std::string prefix = input + "." + kind.name + (with_imatrix ? ".imat" : "");
    const GgufTensorInfo* src_info = g.find_tensor(input + ".src");
    const GgufTensorInfo* imat_info = g.find_tensor(input + ".imatrix");
    const GgufTensorInfo* q_info = g.find_tensor(prefix + ".q");
    const GgufTensorInfo* dq_info = g.find_tensor(prefix + ".dq");
    if (!src_info || !imat_info || !q_info || !dq_info)
        return "golden tensors missing for " + prefix;
    const uint8_t* src = g.tensor_data(*src_info).data();
    const uint8_t* imat = g.tensor_data(*imat_info).data();
    const uint8_t* q = g.tensor_data(*q_info).data();
    const uint8_t* dq = g.tensor_data(*dq_info).data();
    const int64_t n_per_row = src_info->ne[0];
    const int64_t n_rows = src_info->ne[1];
    const size_t row_bytes = static_cast<size_t>(n_per_row / kind.block_size) * kind.block_bytes;
    const size_t n_bytes = row_bytes * static_cast<size_t>(n_rows);

    std::vector<uint8_t> mine(n_bytes, 0xAB);
    std::string err;
    try {
        kind.quantize(reinterpret_cast<const float*>(src), mine.data(), n_rows, n_per_row,
                      with_imatrix ? reinterpret_cast<const float*>(imat) : nullptr);
    } catch (const std::exception& e) {
        return prefix + ": quantize threw: " + e.what();
    }
    for (size_t i = 0; i < n_bytes; ++i) {
        if (mine[i] != q[i]) {
            char msg[160];
            std::snprintf(msg, sizeof msg, "%s.q: first byte difference at %zu (row %zu): %u vs %u",
                          prefix.c_str(), i, i / row_bytes, mine[i], q[i]);
            err = msg;
            break;
        }
    }
    std::vector<float> out(static_cast<size_t>(n_per_row * n_rows));
    try {
        for (int64_t r = 0; r < n_rows; ++r)
            kind.dequantize(q + r * row_bytes, out.data() + r * n_per_row, n_per_row);
    } catch (const std::exception& e) {
        return prefix + ": dequantize threw: " + e.what();
    }
    if (std::memcmp(out.data(), dq, out.size() * sizeof(float)) != 0) {
        if (!err.empty()) err += "; ";
        err += prefix + ".dq differs";
    }
    return err;
}

class IqGolden : public ::testing::TestWithParam<Kind> {};

TEST_P(IqGolden, ReproducesGgmlBytesAndFloats) {
    const Kind& kind = GetParam();
    int passed = 0, total = 0;
    for (const char* input : kInputs) {
        for (const bool with_imatrix : {false, true}) {
            if (!with_imatrix && kind.imatrix_only) continue;
            ++total;
            const std::string err = run_case(kind, input, with_imatrix);
            if (err.empty()) {
                ++passed;
            } else {
                ADD_FAILURE() << err;
            }
        }
    }
    std::printf("[golden] %-8s %d/%d cases pass\n", kind.name, passed, total);
    EXPECT_EQ(passed, total);
}

INSTANTIATE_TEST_SUITE_P(Types, IqGolden, ::testing::ValuesIn(kKinds),
                         [](const auto& info) { return std::string(info.param.name); });

// The checked-in generated header must still say what the format-tables file says.
template <typename T, size_t N>
void expect_table(const GgufFile& f, const char* name, const T (&table)[N]) {
    const GgufTensorInfo* t = f.find_tensor(name);
    ASSERT_NE(t, nullptr) << name;
    ASSERT_EQ(t->ne[0], static_cast<int64_t>(N)) << name;
    EXPECT_EQ(std::memcmp(f.tensor_data(*t).data(), table, sizeof table), 0)
        << name << " differs: regenerate";
}

TEST(IqTables, GeneratedHeaderMatchesFormatTablesFile) {
    namespace tb = quantlens::tables;
    const GgufFile f = GgufFile::open(shared_dir() + "/golden/ggml-format-tables.gguf");
    expect_table(f, "kmask_iq2xs", tb::kmask_iq2xs);
    expect_table(f, "ksigns_iq2xs", tb::ksigns_iq2xs);
    expect_table(f, "iq2xxs_grid", tb::iq2xxs_grid);
    expect_table(f, "iq2xs_grid", tb::iq2xs_grid);
    expect_table(f, "iq2s_grid", tb::iq2s_grid);
    expect_table(f, "iq3xxs_grid", tb::iq3xxs_grid);
    expect_table(f, "iq3s_grid", tb::iq3s_grid);
    expect_table(f, "kvalues_iq4nl", tb::kvalues_iq4nl);
    expect_table(f, "kvalues_fp4", tb::kvalues_fp4);
    expect_table(f, "iq1s_grid", tb::iq1s_grid);
}

// Each lattice point maps to itself, and every other vector has a non-empty neighbour list
// ordered by distance then index.
TEST(IqTables, LatticeMapsAndNeighbourListsAreConsistent) {
    using quantlens::kernels::iq::GridKind;
    for (const GridKind kind : {GridKind::Iq3xxs, GridKind::Iq3s, GridKind::Iq2xxs}) {
        const auto& g = quantlens::kernels::iq::iq_grid(kind);
        const int mask = (1 << g.bits) - 1;
        int n_on = 0;
        for (int u = 0; u < static_cast<int>(g.map.size()); ++u) {
            int8_t pos[8];
            for (int k = 0; k < g.dim; ++k)
                pos[k] = static_cast<int8_t>(2 * ((u >> (g.bits * k)) & mask) + 1);
            auto d2 = [&](int j) {
                int d = 0;
                for (int k = 0; k < g.dim; ++k)
                    d += (g.point(j)[k] - pos[k]) * (g.point(j)[k] - pos[k]);
                return d;
            };
            if (g.map[u] >= 0) {
                ++n_on;
                EXPECT_EQ(d2(g.map[u]), 0);
                continue;
            }
            const uint16_t* nb = g.neighbours_of(u);
            ASSERT_GT(nb[0], 0);
            for (int j = 2; j <= nb[0]; ++j) {
                const int a = d2(nb[j - 1]), b = d2(nb[j]);
                ASSERT_TRUE(a < b || (a == b && nb[j - 1] < nb[j])) << "vector " << u;
            }
        }
        EXPECT_EQ(n_on, g.n_points);
    }
}

TEST(IqKernels, ImatrixOnlyTypesRefuseToRunWithout) {
    std::vector<float> x(256, 0.5f);
    std::vector<uint8_t> out(128);
    EXPECT_THROW(k::quantize_rows_iq2_xxs(x.data(), out.data(), 1, 256, nullptr), std::exception);
    EXPECT_THROW(k::quantize_rows_iq2_xs(x.data(), out.data(), 1, 256, nullptr), std::exception);
    EXPECT_THROW(k::quantize_rows_iq1_s(x.data(), out.data(), 1, 256, nullptr), std::exception);
}

}  // namespace
