// Golden test of every quantization type through the public dispatcher (quant.h) against
// ggml's own output in golden-quants.gguf: for every input X × type T × (plain, imatrix),
// quantize(X.src) must reproduce X.T[.imat].q byte for byte and dequantize(X.T[.imat].q)
// must reproduce X.T[.imat].dq bit for bit. Prints "passed N / total M" and names every
// failing case; a type whose kernels are not written yet is counted as failing, never
// skipped.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/ggml_type.h"
#include "core/half.h"
#include "formats/gguf.h"
#include "model/model.h"
#include "quant/quant.h"
#include "support/test_data.h"

namespace quantlens {
namespace {

using quantlens::test_support::shared_dir;

struct CaseResult {
    std::string name;
    std::string failure;  // empty when passed
};

// Runs one case; returns "" on success, else what went wrong.
std::string run_case(const GgufFile& g, const std::string& input, GgmlType type, bool imat,
                     const std::string& tname) {
    const std::string stem = input + "." + tname + (imat ? ".imat" : "");
    const GgufTensorInfo& src = g.tensor(input + ".src");
    const GgufTensorInfo& q = g.tensor(stem + ".q");
    const GgufTensorInfo& dq = g.tensor(stem + ".dq");
    const int64_t n_per_row = src.ne[0];
    const int64_t n_rows = src.n_rows();
    const auto* x = reinterpret_cast<const float*>(g.tensor_data(src).data());
    const float* w = nullptr;
    if (imat)
        w = reinterpret_cast<const float*>(g.tensor_data(g.tensor(input + ".imatrix")).data());

    const auto want_q = g.tensor_data(q);
    std::vector<uint8_t> got_q(ggml_row_size(type, n_per_row) * static_cast<size_t>(n_rows));
    try {
        const size_t n = quantize(type, x, got_q.data(), n_rows, n_per_row, w);
        if (n != want_q.size() || n != got_q.size())
            return "size " + std::to_string(n) + " != " + std::to_string(want_q.size());
    } catch (const std::exception& e) {
        return std::string("quantize threw: ") + e.what();
    }
    std::string why;
    if (std::memcmp(got_q.data(), want_q.data(), want_q.size()) != 0) {
        size_t first = 0;
        while (got_q[first] == want_q[first]) ++first;
        size_t n_diff = 0;
        for (size_t i = 0; i < want_q.size(); ++i) n_diff += got_q[i] != want_q[i];
        why = ".q differs: " + std::to_string(n_diff) + " bytes, first at " + std::to_string(first);
    }
    const auto want_dq = g.tensor_data(dq);
    std::vector<float> got_dq(static_cast<size_t>(n_rows * n_per_row));
    try {
        dequantize(type, want_q.data(), got_dq.data(), n_rows, n_per_row);
    } catch (const std::exception& e) {
        return why + (why.empty() ? "" : "; ") + "dequantize threw: " + e.what();
    }
    if (want_dq.size() != got_dq.size() * 4 ||
        std::memcmp(got_dq.data(), want_dq.data(), want_dq.size()) != 0)
        why += std::string(why.empty() ? "" : "; ") + ".dq differs";
    return why;
}

TEST(GoldenQuants, EveryInputTypeAndImportanceIsBitExact) {
    const GgufFile g = GgufFile::open(shared_dir() + "/golden/golden-quants.gguf");
    const auto types = g.get("golden.types").as_string_array();
    const auto inputs = g.get("golden.inputs").as_string_array();
    ASSERT_FALSE(types.empty());
    ASSERT_EQ(inputs.size(), 4u);

    std::vector<CaseResult> results;
    for (const auto& input : inputs) {
        for (const auto& tname : types) {
            const auto type = ggml_type_from_name(tname);
            for (bool imat : {false, true}) {
                const std::string stem = input + "." + tname + (imat ? ".imat" : "");
                if (!g.find_tensor(stem + ".q")) continue;  // ggml needs an imatrix for a few
                CaseResult r{stem, {}};
                r.failure = type ? run_case(g, input, *type, imat, tname)
                                 : "type name unknown to ggml_type_from_name";
                results.push_back(r);
            }
        }
    }
    size_t passed = 0;
    for (const auto& r : results) passed += r.failure.empty();
    std::printf("golden quants: passed %zu / total %zu\n", passed, results.size());
    for (const auto& r : results)
        if (!r.failure.empty()) std::printf("  FAIL %s: %s\n", r.name.c_str(), r.failure.c_str());
    EXPECT_EQ(results.size(), 204u) << "the golden file defines 204 cases";
    EXPECT_EQ(passed, results.size());
}

// llama.cpp's own Q4_K_M file of llama-8m (no imatrix; converter rounded BF16 → F16 first):
// quantizing the F16-rounded weights of the Hugging Face model must give its exact bytes for
// every tensor it stores as Q4_K or Q6_K.
TEST(GoldenQuants, ReproducesLlamaCppQ4KMFileOfLlama8m) {
    const auto hf = Model::open(shared_dir() + "/models/llama-8m");
    const GgufFile gguf = GgufFile::open(shared_dir() + "/models/llama-8m-Q4_K_M.gguf");
    int checked = 0, q4 = 0, q6 = 0;
    for (const auto& t : gguf.tensors()) {
        if (t.type != GgmlType::Q4_K && t.type != GgmlType::Q6_K) continue;
        const TensorInfo& src = hf->get(t.name);
        ASSERT_EQ(src.ne, t.ne) << t.name;
        std::vector<float> w = hf->read_f32(src);
        for (float& v : w) v = round_to_f16(v);
        std::vector<uint8_t> q(t.nbytes);
        ASSERT_EQ(quantize(t.type, w.data(), q.data(), t.n_rows(), t.ne[0]), t.nbytes) << t.name;
        const auto want = gguf.tensor_data(t);
        EXPECT_EQ(std::memcmp(q.data(), want.data(), want.size()), 0)
            << t.name << " (" << ggml_type_display_name(t.type) << ") differs from llama.cpp";
        ++checked;
        (t.type == GgmlType::Q4_K ? q4 : q6)++;
    }
    std::printf("llama-8m Q4_K_M: %d tensors reproduced (%d Q4_K, %d Q6_K)\n", checked, q4, q6);
    EXPECT_GT(q4, 0);
    EXPECT_GT(q6, 0);
}

// Every tensor of llama.cpp's file dequantizes to finite values.
TEST(GoldenQuants, DequantizesEveryTensorOfLlamaCppFileToFiniteValues) {
    const GgufFile gguf = GgufFile::open(shared_dir() + "/models/llama-8m-Q4_K_M.gguf");
    for (const auto& t : gguf.tensors()) {
        std::vector<float> out(static_cast<size_t>(t.n_elements()));
        dequantize(t.type, gguf.tensor_data(t).data(), out.data(), t.n_rows(), t.ne[0]);
        for (float v : out) ASSERT_TRUE(std::isfinite(v)) << t.name;
    }
}

}  // namespace
}  // namespace quantlens
