// safetensors reader on the shared test models (sharded and single-file) and on corrupt
// images built in memory: each corruption gives an Error naming the file.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"
#include "core/half.h"
#include "formats/safetensors.h"
#include "support/error_of.h"
#include "support/test_data.h"

using namespace quantlens;
namespace fs = std::filesystem;

namespace {

using quantlens::test_support::shared_path;

std::vector<uint8_t> image(const std::string& header, size_t data_bytes) {
    std::vector<uint8_t> img(8 + header.size() + data_bytes, 0);
    const uint64_t n = header.size();
    std::memcpy(img.data(), &n, 8);
    std::memcpy(img.data() + 8, header.data(), header.size());
    return img;
}

std::string parse_error(const std::vector<uint8_t>& img) {
    return test_support::error_of([&] { SafetensorsModel::parse(img, "bad.safetensors"); });
}

const std::string kGood =
    R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
    R"("b":{"dtype":"BF16","shape":[4],"data_offsets":[24,32]},"__metadata__":{"format":"pt"}})";

}  // namespace

TEST(Safetensors, ShardedLlama) {
    SafetensorsModel m = SafetensorsModel::open(shared_path("models/llama-8m"));
    EXPECT_EQ(m.tensors().size(), 75u);
    EXPECT_EQ(m.files().size(), 2u);
    int64_t params = 0;
    for (const auto& t : m.tensors()) params += t.n_elements();
    EXPECT_EQ(params, 8392960);
    const StTensor& q = m.get("model.layers.3.self_attn.q_proj.weight");
    EXPECT_EQ(q.dtype, StDtype::BF16);
    EXPECT_EQ(q.shape, (std::vector<int64_t>{256, 256}));
    const StTensor& k = m.get("model.layers.0.self_attn.k_proj.weight");
    EXPECT_EQ(k.shape, (std::vector<int64_t>{128, 256}));
    EXPECT_NE(m.get("lm_head.weight").file.find("model-00002-of-00002"), std::string::npos);
    EXPECT_THROW(m.get("nope"), Error);
}

TEST(Safetensors, SingleFileAndConversion) {
    SafetensorsModel m = SafetensorsModel::open(shared_path("models/tiny-qwen2"));
    EXPECT_EQ(m.tensors().size(), 26u);
    const StTensor& norm = m.get("model.norm.weight");
    std::vector<float> v(norm.n_elements());
    SafetensorsModel::to_f32(norm, v);
    uint16_t raw;
    std::memcpy(&raw, norm.data.data() + 2 * 5, 2);
    EXPECT_EQ(v[5], bf16_to_f32(raw));
    EXPECT_NE(v[5], 0.0f);
}

TEST(Safetensors, ParsesInMemoryImage) {
    auto img = image(kGood, 32);
    const float vals[6] = {1, 2, 3, 4, 5, 6};
    std::memcpy(img.data() + 8 + kGood.size(), vals, 24);
    SafetensorsModel m = SafetensorsModel::parse(img, "ok.safetensors");
    ASSERT_EQ(m.tensors().size(), 2u);
    std::vector<float> out(6);
    SafetensorsModel::to_f32(m.get("a"), out);
    EXPECT_EQ(out[5], 6.0f);
}

TEST(SafetensorsCorrupt, Truncations) {
    const auto img = image(kGood, 32);
    for (size_t n : {0ul, 5ul, 8ul, 20ul, img.size() - 1}) {
        std::vector<uint8_t> cut(img.begin(), img.begin() + n);
        const std::string err = parse_error(cut);
        EXPECT_NE(err.find("bad.safetensors"), std::string::npos) << n << ": " << err;
    }
}

TEST(SafetensorsCorrupt, HeaderLengthPastEnd) {
    auto img = image(kGood, 32);
    const uint64_t huge = 1ull << 40;
    std::memcpy(img.data(), &huge, 8);
    EXPECT_NE(parse_error(img).find("runs past the end"), std::string::npos);
    const uint64_t neg = ~0ull;  // -1 as a signed length
    std::memcpy(img.data(), &neg, 8);
    EXPECT_NE(parse_error(img).find("runs past the end"), std::string::npos);
}

TEST(SafetensorsCorrupt, BadEntries) {
    auto err = [](const std::string& h) { return parse_error(image(h, 32)); };
    EXPECT_NE(
        err(R"({"a":{"dtype":"F8","shape":[2],"data_offsets":[0,2]}})").find("unknown dtype 'F8'"),
        std::string::npos);
    EXPECT_NE(err(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,64]}})").find("outside"),
              std::string::npos);
    EXPECT_NE(err(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,4]}})").find("outside"),
              std::string::npos);
    EXPECT_NE(err(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})").find("needs 12"),
              std::string::npos);
    EXPECT_NE(err(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})").find("negative"),
              std::string::npos);
    EXPECT_NE(
        err(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})")
            .find("overflows"),
        std::string::npos);
    EXPECT_NE(err(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                  R"("a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})")
                  .find("duplicate tensor name 'a'"),
              std::string::npos);
    EXPECT_NE(err(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                  R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})")
                  .find("overlap"),
              std::string::npos);
    EXPECT_NE(
        err(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})").find("not valid JSON"),
        std::string::npos);
    EXPECT_NE(err(R"([1,2])").find("not a JSON object"), std::string::npos);
}

namespace {

// The error opening a sharded checkpoint of one shard SHARD holding tensor "a", listed by
// an index of WEIGHT_MAP.
std::string sharded_open_error(const std::string& name, const std::string& weight_map,
                               const std::string& shard) {
    const std::string dir = test_support::scratch_dir("st-" + name);
    test_support::put(fs::path(dir) / "model.safetensors.index.json",
                      R"({"weight_map":)" + weight_map + "}");
    const auto img = image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8);
    test_support::put(fs::path(dir) / shard, std::string(img.begin(), img.end()));
    return test_support::error_of([&] { SafetensorsModel::open(dir); }, "(opened)");
}

}  // namespace

TEST(SafetensorsCorrupt, ShardMissingFromIndex) {
    const std::string e = sharded_open_error(
        "missing-shard",
        R"({"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"})",
        "model-00001-of-00002.safetensors");
    EXPECT_NE(e.find("model-00002-of-00002.safetensors"), std::string::npos) << e;
    EXPECT_NE(e.find("missing"), std::string::npos) << e;
}

TEST(SafetensorsCorrupt, IndexNamesTensorTheShardLacks) {
    const std::string e = sharded_open_error(
        "index-extra", R"({"a":"s1.safetensors","ghost":"s1.safetensors"})", "s1.safetensors");
    EXPECT_NE(e.find("'ghost'"), std::string::npos) << e;
    EXPECT_NE(e.find("model.safetensors.index.json"), std::string::npos) << e;
}
