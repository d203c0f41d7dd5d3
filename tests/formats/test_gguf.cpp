// GGUF reader/writer: real files from llama.cpp and ggml read, validated and re-emitted
// byte for byte; corrupt images rejected with errors naming the file.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "core/error.h"
#include "core/mmap_file.h"
#include "formats/gguf.h"
#include "support/error_of.h"
#include "support/test_data.h"

using namespace quantlens;

namespace {

using quantlens::test_support::shared_path;

void expect_round_trip(const std::string& path) {
    MappedFile original(path);
    GgufFile g = GgufFile::open(path);
    GgufWriter w;
    w.copy_from(g);
    const std::vector<uint8_t> out = w.serialize();
    ASSERT_EQ(out.size(), original.size()) << path;
    EXPECT_EQ(std::memcmp(out.data(), original.data(), out.size()), 0) << path;
}

// Message of the Error thrown by parsing `bytes`, or "" if it parsed.
std::string parse_error(const std::vector<uint8_t>& bytes) {
    return test_support::error_of([&] { GgufFile::parse(bytes, "corrupt.gguf"); });
}

}  // namespace

TEST(Gguf, ReadsLlamaCppFile) {
    GgufFile g = GgufFile::open(shared_path("models/llama-8m-Q4_K_M.gguf"));
    EXPECT_EQ(g.version(), 3u);
    EXPECT_EQ(g.get("general.architecture").as_string(), "llama");
    EXPECT_EQ(g.get("llama.block_count").as_int(), 8);
    EXPECT_EQ(g.get("llama.embedding_length").as_int(), 256);
    EXPECT_EQ(g.get("tokenizer.ggml.tokens").as_string_array().size(), 4096u);
    EXPECT_EQ(g.tensors().size(), 75u);
    const GgufTensorInfo& q = g.tensor("blk.0.attn_q.weight");
    EXPECT_EQ(q.ne, (std::vector<int64_t>{256, 256}));
    const GgufTensorInfo& norm = g.tensor("blk.0.attn_norm.weight");
    EXPECT_EQ(norm.type, GgmlType::F32);
    EXPECT_EQ(norm.nbytes, 256u * 4);
    EXPECT_EQ(g.tensor_data(norm).size(), 1024u);
    EXPECT_EQ(g.find_tensor("nope"), nullptr);
    EXPECT_THROW(g.tensor("nope"), Error);
}

TEST(Gguf, RoundTripLlamaCppFileByteForByte) {
    expect_round_trip(shared_path("models/llama-8m-Q4_K_M.gguf"));
}

TEST(Gguf, RoundTripGgmlGoldenFileByteForByte) {
    expect_round_trip(shared_path("golden/golden-quants.gguf"));
}

TEST(Gguf, RoundTripFormatTables) {
    expect_round_trip(shared_path("golden/ggml-format-tables.gguf"));
}

TEST(Gguf, WriteToDiskMatchesSerialize) {
    const std::string path = shared_path("models/tiny-moe-Q4_K_M.gguf");
    GgufFile g = GgufFile::open(path);
    GgufWriter w;
    w.copy_from(g);
    std::filesystem::create_directories(QL_TEST_TMP);
    const std::string out = std::string(QL_TEST_TMP) + "/roundtrip-moe.gguf";
    w.write(out, Overwrite::replace);  // a fixed name, rewritten by every run
    MappedFile a(path), b(out);
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size()), 0);
    std::filesystem::remove(out);
}

TEST(Gguf, EveryValueTypeAndNestedArrays) {
    GgufWriter w;
    w.add_kv("a.u8", GgufValue{GgufValueType::UINT8, uint64_t{200}, GgufValueType::UINT8, {}});
    w.add_kv("a.i8", GgufValue{GgufValueType::INT8, int64_t{-100}, GgufValueType::UINT8, {}});
    w.add_kv("a.u16", GgufValue{GgufValueType::UINT16, uint64_t{60000}, GgufValueType::UINT8, {}});
    w.add_kv("a.i16", GgufValue{GgufValueType::INT16, int64_t{-30000}, GgufValueType::UINT8, {}});
    w.add_kv("a.u32", GgufValue::u32(4000000000u));
    w.add_kv("a.i32", GgufValue::i32(-2000000000));
    w.add_kv("a.f32", GgufValue::f32(1.5f));
    w.add_kv("a.bool", GgufValue::boolean(true));
    w.add_kv("a.str", GgufValue::string("héllo"));
    w.add_kv("a.u64", GgufValue::u64(1ull << 60));
    w.add_kv("a.i64",
             GgufValue{GgufValueType::INT64, int64_t{-(1ll << 60)}, GgufValueType::UINT8, {}});
    w.add_kv("a.f64", GgufValue{GgufValueType::FLOAT64, 0.1, GgufValueType::UINT8, {}});
    GgufValue nested{GgufValueType::ARRAY, uint64_t{0}, GgufValueType::ARRAY, {}};
    nested.array.push_back(GgufValue::i32_array({1, 2, 3}));
    nested.array.push_back(GgufValue::i32_array({}));
    w.add_kv("a.nested", nested);
    w.add_kv("a.strs", GgufValue::string_array({"x", "", "zz"}));
    w.add_kv("general.alignment", GgufValue::u32(64));
    std::vector<float> data(64, 0.25f);
    std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(data.data()), 256);
    w.add_tensor("t", {32, 2}, GgmlType::F32, bytes);
    w.add_tensor("u", {16}, GgmlType::F32, bytes.subspan(0, 64));
    const auto img = w.serialize();
    GgufFile g = GgufFile::parse(img, "mem.gguf");
    EXPECT_EQ(g.alignment(), 64u);
    EXPECT_EQ(g.data_offset() % 64, 0u);
    EXPECT_EQ(g.get("a.u8").as_int(), 200);
    EXPECT_EQ(g.get("a.i8").as_int(), -100);
    EXPECT_EQ(g.get("a.u16").as_int(), 60000);
    EXPECT_EQ(g.get("a.i16").as_int(), -30000);
    EXPECT_EQ(g.get("a.u32").as_int(), 4000000000ll);
    EXPECT_EQ(g.get("a.i32").as_int(), -2000000000);
    EXPECT_EQ(g.get("a.f32").as_float(), 1.5);
    EXPECT_TRUE(g.get("a.bool").as_bool());
    EXPECT_EQ(g.get("a.str").as_string(), "héllo");
    EXPECT_EQ(g.get("a.u64").as_int(), 1ll << 60);
    EXPECT_EQ(g.get("a.i64").as_int(), -(1ll << 60));
    EXPECT_EQ(g.get("a.f64").as_float(), 0.1);
    EXPECT_EQ(g.get("a.nested").array.at(0).as_int_array(), (std::vector<int64_t>{1, 2, 3}));
    EXPECT_TRUE(g.get("a.nested").array.at(1).array.empty());
    EXPECT_EQ(g.get("a.strs").as_string_array(), (std::vector<std::string>{"x", "", "zz"}));
    EXPECT_THROW(g.get("a.str").as_int(), Error);
    EXPECT_THROW(g.get("missing"), Error);
    EXPECT_EQ(g.tensor("u").offset, 256u);
    EXPECT_EQ(g.tensor_data(g.tensor("t"))[4], bytes[4]);
    GgufWriter again;
    again.copy_from(g);
    EXPECT_EQ(again.serialize(), img);
}

TEST(Gguf, WriterRejectsWrongDataSize) {
    GgufWriter w;
    std::vector<uint8_t> bytes(10);
    EXPECT_THROW(w.add_tensor("t", {4}, GgmlType::F32, bytes), Error);
    EXPECT_THROW(w.add_tensor("q", {100}, GgmlType::Q4_K, bytes), Error);
}

namespace {

// A small valid image: two F32 tensors and one string KV.
std::vector<uint8_t> small_image() {
    static std::vector<float> data(64, 1.0f);
    std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(data.data()), 128);
    GgufWriter w;
    w.add_kv("general.architecture", GgufValue::string("llama"));
    w.add_tensor("first", {32}, GgmlType::F32, bytes);
    w.add_tensor("second", {32}, GgmlType::F32, bytes);
    return w.serialize();
}

// Byte offset of the first occurrence of `needle` in `img`.
size_t find_bytes(const std::vector<uint8_t>& img, const std::string& needle) {
    auto it = std::search(img.begin(), img.end(), needle.begin(), needle.end());
    EXPECT_NE(it, img.end());
    return static_cast<size_t>(it - img.begin());
}

template <typename T>
void poke(std::vector<uint8_t>& img, size_t at, T v) {
    std::memcpy(img.data() + at, &v, sizeof(T));
}

}  // namespace

TEST(GgufCorrupt, EveryTruncationIsAnError) {
    const auto img = small_image();
    ASSERT_EQ(parse_error(img), "");
    for (size_t n = 0; n < img.size(); ++n) {
        std::vector<uint8_t> cut(img.begin(), img.begin() + n);
        const std::string err = parse_error(cut);
        ASSERT_NE(err, "") << "truncated to " << n << " bytes parsed";
        EXPECT_NE(err.find("corrupt.gguf"), std::string::npos) << err;
    }
}

TEST(GgufCorrupt, BadMagicAndVersion) {
    auto img = small_image();
    img[0] = 'X';
    EXPECT_NE(parse_error(img).find("not a GGUF file"), std::string::npos);
    img = small_image();
    poke<uint32_t>(img, 4, 99);
    EXPECT_NE(parse_error(img).find("unsupported GGUF version 99"), std::string::npos);
}

TEST(GgufCorrupt, HugeCountsAndLengths) {
    auto img = small_image();
    poke<uint64_t>(img, 8, ~0ull);  // tensor count
    EXPECT_NE(parse_error(img).find("tensor count"), std::string::npos);
    img = small_image();
    poke<uint64_t>(img, 16, 1ull << 62);  // KV count
    EXPECT_NE(parse_error(img).find("KV count"), std::string::npos);
    img = small_image();
    poke<uint64_t>(img, 24, ~0ull);  // first key's length
    EXPECT_NE(parse_error(img).find("string length"), std::string::npos);
}

TEST(GgufCorrupt, DuplicateTensorName) {
    static std::vector<float> data(32, 1.0f);
    std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(data.data()), 128);
    GgufWriter w;
    w.add_tensor("same", {32}, GgmlType::F32, bytes);
    w.add_tensor("sam2", {32}, GgmlType::F32, bytes);
    auto dup = w.serialize();
    const size_t at2 = find_bytes(dup, "sam2");
    dup[at2 + 3] = 'e';
    EXPECT_NE(parse_error(dup).find("duplicate tensor name 'same'"), std::string::npos);
}

TEST(GgufCorrupt, UnknownTypeNegativeDimAndOffsets) {
    const auto base = small_image();
    const size_t name_at = find_bytes(base, "second");
    const size_t ndims_at = name_at + 6;
    const size_t ne_at = ndims_at + 4;
    const size_t type_at = ne_at + 8;
    const size_t offset_at = type_at + 4;

    auto img = base;
    poke<uint32_t>(img, type_at, 77);
    EXPECT_NE(parse_error(img).find("unknown ggml type id 77"), std::string::npos);
    img = base;
    poke<int64_t>(img, ne_at, -5);
    EXPECT_NE(parse_error(img).find("negative dimension"), std::string::npos);
    img = base;
    poke<uint32_t>(img, ndims_at, 9);
    EXPECT_NE(parse_error(img).find("9 dimensions"), std::string::npos);
    img = base;
    poke<uint64_t>(img, offset_at, 4096);
    EXPECT_NE(parse_error(img).find("outside"), std::string::npos);
    img = base;
    poke<uint64_t>(img, offset_at, 7);
    EXPECT_NE(parse_error(img).find("not a multiple of the alignment"), std::string::npos);
    img = base;
    poke<uint64_t>(img, offset_at, ~0ull - 31);
    EXPECT_NE(parse_error(img).find("outside"), std::string::npos);
    img = base;
    poke<int64_t>(img, ne_at, 1ll << 62);  // 2^64 bytes of F32
    EXPECT_NE(parse_error(img).find("overflows"), std::string::npos);
}

TEST(GgufCorrupt, FileErrorsNameThePath) {
    try {
        GgufFile::open("/nonexistent/x.gguf");
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("/nonexistent/x.gguf"), std::string::npos);
    }
}
