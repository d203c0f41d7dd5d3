// imatrix writers: llama.cpp's own legacy file round-trips through our legacy and GGUF
// writers and reader with its values, call count, chunk count and dataset intact; stacked
// expert entries keep per-matrix token counts; inconsistent entries are refused by name.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"
#include "formats/gguf.h"
#include "formats/imatrix.h"
#include "support/test_data.h"

namespace fs = std::filesystem;
using namespace quantlens;

namespace {

using quantlens::test_support::shared_dir;

std::string tmp_path(const std::string& name) {
    const fs::path d = fs::path(QL_TEST_TMP) / "imatrix_write";
    fs::create_directories(d);
    fs::remove(d / name);  // writers refuse an existing file; every run starts clean
    return (d / name).string();
}

std::string reference() {
    return shared_dir() + "/data/llama-8m.llamacpp-imatrix.dat";
}

// Entries of a legacy file with call counts turned into token counts, as the writers take.
std::vector<ImatrixEntry> as_token_counts(const Imatrix& m, int64_t chunk_size) {
    std::vector<ImatrixEntry> out = m.entries();
    for (auto& e : out)
        for (auto& c : e.counts) c *= chunk_size;
    return out;
}

double max_rel_diff(const ImatrixEntry& a, const ImatrixEntry& b) {
    double worst = 0;
    for (size_t i = 0; i < a.values.size(); ++i) {
        const double d = std::fabs(a.values[i] - b.values[i]);
        worst = std::max(worst, d / std::max(1e-30, std::fabs(double(a.values[i]))));
    }
    return worst;
}

}  // namespace

TEST(ImatrixWrite, LlamaCppLegacyFileRoundTripsThroughLegacy) {
    const Imatrix ref = Imatrix::load(reference());
    ASSERT_EQ(ref.entries().size(), 56u);  // 8 layers × 7 linear weights
    ASSERT_EQ(ref.chunk_count(), 384);
    ImatrixWriteInfo info{512, ref.chunk_count(), ref.datasets()};
    const std::string out = tmp_path("roundtrip.dat");
    write_imatrix(out, as_token_counts(ref, 512), info);
    // Same layout byte for byte except float rounding in value / n_calls × n_calls.
    EXPECT_EQ(fs::file_size(out), fs::file_size(reference()));
    const Imatrix back = Imatrix::load(out);
    ASSERT_EQ(back.entries().size(), ref.entries().size());
    EXPECT_EQ(back.chunk_count(), 384);
    EXPECT_EQ(back.datasets(), ref.datasets());
    // llama.cpp of that build wrote its hash-map order; ours is sorted by name.
    EXPECT_TRUE(std::is_sorted(back.entries().begin(), back.entries().end(),
                               [](const auto& x, const auto& y) { return x.name < y.name; }));
    for (const auto& a : ref.entries()) {
        ASSERT_NE(back.find(a.name), nullptr) << a.name;
        const auto& b = *back.find(a.name);
        EXPECT_EQ(a.counts, b.counts) << a.name;  // n_calls = 384
        EXPECT_EQ(a.n_values, b.n_values);
        EXPECT_LT(max_rel_diff(a, b), 3e-7) << a.name;
    }
}

TEST(ImatrixWrite, LlamaCppLegacyFileRoundTripsThroughGguf) {
    const Imatrix ref = Imatrix::load(reference());
    ImatrixWriteInfo info{512, ref.chunk_count(), ref.datasets()};
    const std::string out = tmp_path("roundtrip.gguf");
    write_imatrix(out, as_token_counts(ref, 512), info);
    const GgufFile g = GgufFile::open(out);
    EXPECT_EQ(g.get("general.type").as_string(), "imatrix");
    EXPECT_EQ(g.get("imatrix.chunk_count").as_int(), 384);
    EXPECT_EQ(g.get("imatrix.chunk_size").as_int(), 512);
    EXPECT_EQ(g.get("imatrix.chunk_count").type, GgufValueType::UINT32);
    const GgufTensorInfo& s = g.tensor("blk.0.ffn_down.weight.in_sum2");
    EXPECT_EQ(s.ne, (std::vector<int64_t>{768, 1}));
    EXPECT_EQ(g.tensor("blk.0.ffn_down.weight.counts").ne, (std::vector<int64_t>{1, 1}));
    const Imatrix back = Imatrix::load(out);
    ASSERT_EQ(back.entries().size(), ref.entries().size());
    EXPECT_EQ(back.datasets(), ref.datasets());
    for (const auto& a : ref.entries()) {
        ASSERT_NE(back.find(a.name), nullptr) << a.name;
        EXPECT_EQ(back.find(a.name)->counts, std::vector<int64_t>{384 * 512});
        EXPECT_LT(max_rel_diff(a, *back.find(a.name)), 3e-7) << a.name;
    }
    // And back to legacy from the GGUF file: the same call counts as llama.cpp's.
    const std::string dat = tmp_path("from_gguf.dat");
    write_imatrix(dat, back.entries(), info);
    const Imatrix again = Imatrix::load(dat);
    EXPECT_EQ(again.entries()[0].counts, std::vector<int64_t>{384});
    const auto& e5 = ref.entries()[5];
    EXPECT_LT(max_rel_diff(e5, *again.find(e5.name)), 6e-7) << e5.name;
}

TEST(ImatrixWrite, StackedExpertsKeepPerMatrixCounts) {
    ImatrixEntry e;
    e.name = "blk.0.ffn_up_exps.weight";
    e.n_values = 3 * 4;
    e.counts = {1000, 0, 24};  // expert 1 never routed
    e.values = {1, 2, 3, 4, 0, 0, 0, 0, 0.5f, 0.25f, 0.125f, 2};
    ImatrixWriteInfo info{512, 2, {"calib.txt"}};
    const std::string gg = tmp_path("moe.gguf"), dat = tmp_path("moe.dat");
    write_imatrix(gg, {e}, info);
    write_imatrix(dat, {e}, info);
    const Imatrix g = Imatrix::load(gg);
    EXPECT_EQ(g.entries()[0].counts, (std::vector<int64_t>{1000, 0, 24}));
    // The unrouted expert reads as importance 1 in every column, as llama.cpp's quantize
    // loads a zero count, and is listed as a fallback; the others keep their values.
    EXPECT_EQ(g.entries()[0].values,
              (std::vector<float>{1, 2, 3, 4, 1, 1, 1, 1, 0.5f, 0.25f, 0.125f, 2}));
    ASSERT_EQ(g.zero_count_matrices().size(), 1u);
    EXPECT_EQ(g.zero_count_matrices()[0].tensor, e.name);
    EXPECT_EQ(g.zero_count_matrices()[0].matrix, 1);
    EXPECT_EQ(g.importance(e.name, 4, 3, 2)[1], 0.25f);
    const Imatrix d = Imatrix::load(dat);
    EXPECT_EQ(d.entries()[0].counts, std::vector<int64_t>{2});  // ceil(1000 / 512)
    // The unrouted expert reads back as 1 (llama.cpp's placeholder), the others unchanged.
    EXPECT_EQ(d.importance(e.name, 4, 3, 1)[0], 1.0f);
    EXPECT_EQ(d.importance(e.name, 4, 3, 0)[3], 4.0f);
    EXPECT_EQ(d.datasets(), std::vector<std::string>{"calib.txt"});
    EXPECT_EQ(d.chunk_count(), 2);
    EXPECT_TRUE(d.zero_count_matrices().empty());  // legacy counts are shared calls
}

TEST(ImatrixWrite, InconsistentEntryIsRefusedByName) {
    ImatrixEntry e;
    e.name = "blk.3.attn_q.weight";
    e.n_values = 10;
    e.counts = {3};
    e.values.assign(9, 1.0f);
    try {
        write_imatrix(tmp_path("bad.dat"), {e}, {});
        FAIL() << "expected an Error";
    } catch (const Error& err) {
        EXPECT_NE(std::string(err.what()).find("blk.3.attn_q.weight"), std::string::npos);
    }
    e.values.assign(10, 1.0f);
    e.counts = {1, 2, 3};  // 10 values do not split into 3 matrices
    EXPECT_THROW(write_imatrix(tmp_path("bad.gguf"), {e}, {}), Error);
    EXPECT_THROW(write_imatrix(tmp_path("none.dat"), {}, {}), Error);
}
