// GgufWriter's streamed tensors (bytes produced at write time): same file as the span API,
// no file left behind when a producer fails, and memory bounded by one tensor, not the file.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include "core/error.h"
#include "core/mmap_file.h"
#include "formats/gguf.h"
#include "support/test_data.h"

using namespace quantlens;
namespace fs = std::filesystem;

namespace {

using quantlens::test_support::shared_path;

fs::path tmp_dir(const std::string& name) {
    const fs::path d = fs::path(QL_TEST_TMP) / "gguf_stream" / name;
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}

// A /proc/self/status field in kB ("VmHWM", "VmRSS"); -1 if unavailable.
int64_t proc_status_kb(const std::string& field) {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1));
    return -1;
}

// Streams every tensor of `g` through a producer copying from the mapped file.
GgufWriter streamed_copy(const GgufFile& g) {
    GgufWriter w;
    w.set_alignment(g.alignment());
    for (const auto& [k, v] : g.kv()) w.add_kv(k, v);
    for (const auto& t : g.tensors()) {
        const std::span<const uint8_t> data = g.tensor_data(t);
        w.add_tensor(t.name, t.ne, t.type, data.size(),
                     [data](std::vector<uint8_t>& out) { out.assign(data.begin(), data.end()); });
    }
    return w;
}

}  // namespace

TEST(GgufStream, SameBytesAsSpanApi) {
    const std::string path = shared_path("models/tiny-moe-Q4_K_M.gguf");
    GgufFile g = GgufFile::open(path);
    GgufWriter spans;
    spans.copy_from(g);
    const std::vector<uint8_t> expected = spans.serialize();

    const GgufWriter streamed = streamed_copy(g);
    EXPECT_EQ(streamed.serialize(), expected);
    const fs::path out = tmp_dir("same") / "streamed.gguf";
    streamed.write(out.string());
    MappedFile written(out.string());
    ASSERT_EQ(written.size(), expected.size());
    EXPECT_EQ(std::memcmp(written.data(), expected.data(), expected.size()), 0);
    EXPECT_FALSE(fs::exists(out.string() + ".tmp"));
}

TEST(GgufStream, MixedSpanAndProducedTensorsKeepOffsetsAndPadding) {
    // Sizes not multiples of the alignment, so every tensor is followed by padding.
    std::vector<float> a(7 * 3, 0.5f), c(5, -2.0f);
    const std::span<const uint8_t> a_bytes(reinterpret_cast<const uint8_t*>(a.data()), 84);
    const std::span<const uint8_t> c_bytes(reinterpret_cast<const uint8_t*>(c.data()), 20);
    std::vector<uint8_t> b(ggml_row_size(GgmlType::Q8_0, 64) * 3);
    for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(i * 7);

    GgufWriter spans, mixed;
    for (GgufWriter* w : {&spans, &mixed}) {
        w->add_kv("general.architecture", GgufValue::string("llama"));
        w->add_kv("general.alignment", GgufValue::u32(64));
        w->add_tensor("a", {7, 3}, GgmlType::F32, a_bytes);
    }
    spans.add_tensor("b", {64, 3}, GgmlType::Q8_0, b);
    spans.add_tensor("c", {5}, GgmlType::F32, c_bytes);
    mixed.add_tensor("b", {64, 3}, GgmlType::Q8_0, b.size(),
                     [&b](std::vector<uint8_t>& out) { out = b; });
    mixed.add_tensor("c", {5}, GgmlType::F32, 20, [&c_bytes](std::vector<uint8_t>& out) {
        out.insert(out.end(), c_bytes.begin(), c_bytes.end());
    });
    const std::vector<uint8_t> img = spans.serialize();
    EXPECT_EQ(mixed.serialize(), img);
    const fs::path out = tmp_dir("mixed") / "mixed.gguf";
    mixed.write(out.string());
    GgufFile g = GgufFile::open(out.string());
    EXPECT_EQ(g.tensor("b").offset, 128u);
    EXPECT_EQ(g.tensor("c").offset, 128u + 256u);  // b: 204 bytes padded to 256
    const auto got = g.tensor_data(g.tensor("b"));
    EXPECT_TRUE(std::equal(got.begin(), got.end(), b.begin(), b.end()));
}

TEST(GgufStream, ThrowingProducerLeavesNoFile) {
    std::vector<float> x(32, 1.0f);
    const std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(x.data()), 128);
    GgufWriter w;
    w.add_tensor("first", {32}, GgmlType::F32, bytes);
    w.add_tensor("second", {32}, GgmlType::F32, 128,
                 [](std::vector<uint8_t>&) { throw Error("second: source unreadable"); });
    const fs::path out = tmp_dir("throw") / "out.gguf";
    try {
        w.write(out.string());
        FAIL() << "write() should rethrow the producer's error";
    } catch (const Error& e) {
        EXPECT_STREQ(e.what(), "second: source unreadable");
    }
    EXPECT_FALSE(fs::exists(out));
    EXPECT_FALSE(fs::exists(out.string() + ".tmp"));
}

TEST(GgufStream, WrongProducedSizeNamesTheTensor) {
    GgufWriter w;
    w.add_tensor("blk.3.ffn_up.weight", {64, 2}, GgmlType::Q8_0, 2 * 68,
                 [](std::vector<uint8_t>& out) { out.resize(2 * 68 - 1); });
    const fs::path out = tmp_dir("size") / "out.gguf";
    try {
        w.write(out.string());
        FAIL() << "a short tensor must be an error";
    } catch (const InternalError& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("blk.3.ffn_up.weight"), std::string::npos) << msg;
        EXPECT_NE(msg.find(out.string()), std::string::npos) << msg;
    }
    EXPECT_FALSE(fs::exists(out));
    EXPECT_FALSE(fs::exists(out.string() + ".tmp"));
    EXPECT_THROW(w.serialize(), InternalError);
}

TEST(GgufStream, DeclaredSizeCheckedWhenAdded) {
    GgufWriter w;
    const auto fill = [](std::vector<uint8_t>& out) { out.resize(16); };
    EXPECT_THROW(w.add_tensor("t", {4}, GgmlType::F32, 15, fill), Error);
    EXPECT_THROW(w.add_tensor("q", {100}, GgmlType::Q4_K, 16, fill), Error);
    EXPECT_THROW(w.add_tensor("n", {4}, GgmlType::F32, 16, nullptr), Error);
    w.add_tensor("t", {4}, GgmlType::F32, 16, fill);
    EXPECT_THROW(w.add_tensor("t", {4}, GgmlType::F32, 16, fill), Error);
}

// 20 tensors × 16 MiB = 320 MiB written; a writer holding them all would grow by that
// much. Streamed, growth is one tensor's buffer (16 MiB) plus allocator slack; a quarter of
// the total leaves room for that and fails by a wide margin if tensors accumulate.
TEST(GgufStream, PeakMemoryIsOneTensorNotTheFile) {
    constexpr int kTensors = 20;
    constexpr int64_t kRowLen = 4096, kRows = 1024;  // F32: 16 MiB per tensor
    constexpr uint64_t kBytes = kRowLen * kRows * 4;
    constexpr int64_t kTotalKb = kTensors * static_cast<int64_t>(kBytes) / 1024;

    // Writing "5" resets VmHWM to the current RSS (Linux ≥ 4.0), so the peak measured below
    // is this test's and not an earlier test's in the same process.
    {
        std::ofstream clear("/proc/self/clear_refs");
        clear << "5";
    }
    const int64_t rss0 = proc_status_kb("VmRSS");
    const int64_t hwm0 = proc_status_kb("VmHWM");
    if (rss0 < 0 || hwm0 < 0) GTEST_SKIP() << "no /proc/self/status";
    const int64_t base = std::max(rss0, hwm0);  // hwm0 > rss0 if clear_refs was refused

    GgufWriter w;
    for (int i = 0; i < kTensors; ++i)
        w.add_tensor(fmt::format("t{}", i), {kRowLen, kRows}, GgmlType::F32, kBytes,
                     [i](std::vector<uint8_t>& out) {
                         out.resize(kBytes);
                         for (size_t k = 0; k < out.size(); k += 4096)
                             out[k] = static_cast<uint8_t>(i + k / 4096);
                     });
    const fs::path out = tmp_dir("memory") / "big.gguf";
    w.write(out.string());
    const int64_t growth = proc_status_kb("VmHWM") - base;
    RecordProperty("peak_growth_kb", std::to_string(growth));
    std::printf("peak RSS growth writing %d × 16 MiB: %lld kB (total %lld kB)\n", kTensors,
                static_cast<long long>(growth), static_cast<long long>(kTotalKb));
    EXPECT_LT(growth, kTotalKb / 4);

    GgufFile g = GgufFile::open(out.string());
    ASSERT_EQ(g.tensors().size(), static_cast<size_t>(kTensors));
    for (int i = 0; i < kTensors; i += 7) {
        const auto d = g.tensor_data(g.tensor(fmt::format("t{}", i)));
        ASSERT_EQ(d.size(), kBytes);
        EXPECT_EQ(d[0], static_cast<uint8_t>(i));
        EXPECT_EQ(d[4096 * 3], static_cast<uint8_t>(i + 3));
    }
    fs::remove_all(out.parent_path());
}
