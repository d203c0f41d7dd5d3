// quantize_model: llama-8m with the Q4_K_M preset must give llama.cpp's file tensor for
// tensor and byte for byte; metadata must match llama.cpp's converter; bad input is refused
// with nothing left on disk.
#include <gtest/gtest.h>

#include <sys/resource.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "analysis/write/presets.h"
#include "analysis/write/quantize.h"
#include "core/error.h"
#include "formats/gguf.h"
#include "formats/imatrix.h"
#include "model/model.h"
#include "support/error_of.h"
#include "support/test_data.h"

using namespace quantlens;
namespace fs = std::filesystem;

namespace {

using quantlens::test_support::shared_dir;

fs::path tmp_dir() {
    fs::path d = fs::path(QL_TEST_TMP) / "quantize";
    fs::create_directories(d);
    return d;
}

QuantizeOptions opts_for(const fs::path& out) {
    QuantizeOptions o;
    o.output_path = out.string();
    o.force = true;
    o.progress = false;
    return o;
}

// Keys whose values are free text derived from names (documented in gguf_metadata.h) or
// that our converter-equivalent writes where the reference's converter build did not.
bool free_text_key(const std::string& k) {
    return k == "general.name" || k == "general.basename" || k == "general.size_label";
}

void expect_same_value(const std::string& key, const GgufValue& a, const GgufValue& b) {
    ASSERT_EQ(static_cast<int>(a.type), static_cast<int>(b.type)) << key;
    if (a.type == GgufValueType::ARRAY) {
        ASSERT_EQ(static_cast<int>(a.array_type), static_cast<int>(b.array_type)) << key;
        ASSERT_EQ(a.array.size(), b.array.size()) << key;
        if (a.array_type == GgufValueType::STRING)
            EXPECT_EQ(a.as_string_array(), b.as_string_array()) << key;
        else
            EXPECT_EQ(a.as_int_array(), b.as_int_array()) << key;
    } else if (a.type == GgufValueType::STRING) {
        EXPECT_EQ(a.as_string(), b.as_string()) << key;
    } else if (a.type == GgufValueType::FLOAT32 || a.type == GgufValueType::FLOAT64) {
        EXPECT_EQ(a.as_float(), b.as_float()) << key;
    } else {
        EXPECT_EQ(a.as_int(), b.as_int()) << key;
    }
}

// Every tensor of `ref` in ours, same order, shape, type and bytes.
void expect_same_tensors(const GgufFile& ours, const GgufFile& ref) {
    ASSERT_EQ(ours.tensors().size(), ref.tensors().size());
    for (size_t i = 0; i < ref.tensors().size(); ++i) {
        const auto& a = ours.tensors()[i];
        const auto& b = ref.tensors()[i];
        EXPECT_EQ(a.name, b.name) << i;
        EXPECT_EQ(a.ne, b.ne) << b.name;
        EXPECT_EQ(a.type, b.type) << b.name;
        EXPECT_EQ(a.offset, b.offset) << b.name;
        const auto da = ours.tensor_data(a);
        const auto db = ref.tensor_data(b);
        ASSERT_EQ(da.size(), db.size()) << b.name;
        size_t diff = 0;
        for (size_t j = 0; j < da.size(); ++j) diff += da[j] != db[j];
        EXPECT_EQ(diff, 0u) << b.name << ": " << diff << " of " << da.size()
                            << " bytes differ from llama.cpp's";
    }
}

// KVs of `ours` against llama.cpp's file: same keys in the same order, same types and
// values, except free text and llama.rope.freq_base (see gguf_metadata.h).
void expect_same_kv(const GgufFile& ours, const GgufFile& ref, const std::string& arch) {
    std::vector<std::string> ours_keys, ref_keys;
    for (const auto& [k, v] : ours.kv())
        if (k != arch + ".rope.freq_base") ours_keys.push_back(k);
    for (const auto& [k, v] : ref.kv())
        if (k != arch + ".rope.freq_base") ref_keys.push_back(k);
    EXPECT_EQ(ours_keys, ref_keys);
    for (const auto& [k, v] : ref.kv()) {
        const GgufValue* mine = ours.find(k);
        if (k == arch + ".rope.freq_base") {
            ASSERT_NE(mine, nullptr);
            EXPECT_EQ(mine->as_float(), v.as_float());
            continue;
        }
        ASSERT_NE(mine, nullptr) << k;
        if (free_text_key(k)) continue;
        expect_same_value(k, *mine, v);
    }
    // Our free text still follows the converter's heuristics.
    EXPECT_EQ(ours.get("general.name").as_string(), ref.get("general.name").as_string());
}

}  // namespace

TEST(Quantize, Llama8mQ4KMIsLlamaCppsFileByteForByte) {
    auto model = Model::open(shared_dir() + "/models/llama-8m");
    const Recipe recipe = preset_recipe("Q4_K_M", *model, false);
    const fs::path out = tmp_dir() / "llama-8m-Q4_K_M.gguf";
    const QuantizeResult r = quantize_model(*model, recipe, opts_for(out));
    EXPECT_TRUE(r.fallbacks.empty());
    EXPECT_EQ(r.file_type, 15u);
    EXPECT_EQ(r.n_params, 8392960);

    const GgufFile ours = GgufFile::open(out.string());
    const GgufFile ref = GgufFile::open(shared_dir() + "/models/llama-8m-Q4_K_M.gguf");
    expect_same_tensors(ours, ref);
    expect_same_kv(ours, ref, "llama");
    EXPECT_EQ(ours.get("llama.rope.freq_base").as_float(), 10000.0);
    // The only extra key is llama.rope.freq_base (36 header bytes, then alignment to 32).
    const uint64_t extra =
        r.file_bytes - fs::file_size(shared_dir() + "/models/llama-8m-Q4_K_M.gguf");
    EXPECT_TRUE(extra == 32 || extra == 64) << extra;
    EXPECT_NEAR(r.bpw, 5.12, 0.01);

    // Our own model reader opens it and sees the same architecture.
    auto back = Model::open(out.string());
    EXPECT_EQ(back->source(), Model::Source::Gguf);
    EXPECT_EQ(back->config().n_layers, 8);
    EXPECT_EQ(back->config().hidden, 256);
    EXPECT_EQ(back->config().n_kv_heads, 2);
    EXPECT_EQ(back->config().vocab, 4096);
    EXPECT_EQ(back->tensors().size(), 75u);
}

TEST(Quantize, TinyMoeQ4KMMatchesLlamaCpp) {
    auto model = Model::open(shared_dir() + "/models/tiny-moe");
    const fs::path out = tmp_dir() / "tiny-moe-Q4_K_M.gguf";
    const QuantizeResult r =
        quantize_model(*model, preset_recipe("Q4_K_M", *model, false), opts_for(out));
    const GgufFile ours = GgufFile::open(out.string());
    const GgufFile ref = GgufFile::open(shared_dir() + "/models/tiny-moe-Q4_K_M.gguf");
    expect_same_tensors(ours, ref);
    expect_same_kv(ours, ref, "llama");
    EXPECT_EQ(r.file_type, 15u);
}

TEST(Quantize, GgufSourceKeepsMetadataAndCopiesSameTypeTensors) {
    const std::string src = shared_dir() + "/models/llama-8m-Q4_K_M.gguf";
    auto model = Model::open(src);
    Recipe recipe;  // everything Q8_0 except the tensors already in Q6_K
    recipe.default_type = GgmlType::Q8_0;
    recipe.tensors["output.weight"] = GgmlType::Q6_K;
    const fs::path out = tmp_dir() / "requant.gguf";
    QuantizeOptions opts = opts_for(out);
    EXPECT_THROW(quantize_model(*model, recipe, opts), Error);  // Q4_K → Q8_0 needs consent
    opts.allow_requantize = true;
    const QuantizeResult r = quantize_model(*model, recipe, opts);
    EXPECT_EQ(r.file_type, 7u);  // dominant Q8_0
    const GgufFile ours = GgufFile::open(out.string());
    const GgufFile ref = GgufFile::open(src);
    // KVs: the source's, with quantization_version and file_type re-appended last.
    ASSERT_EQ(ours.kv().size(), ref.kv().size());
    EXPECT_EQ(ours.kv().back().first, "general.file_type");
    EXPECT_EQ(ours.get("general.file_type").as_int(), 7);
    EXPECT_EQ(ours.get("tokenizer.ggml.merges").as_string_array(),
              ref.get("tokenizer.ggml.merges").as_string_array());
    const auto a = ours.tensor_data(ours.tensor("output.weight"));
    const auto b = ref.tensor_data(ref.tensor("output.weight"));
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size()), 0);
    EXPECT_EQ(ours.tensor("blk.0.ffn_up.weight").type, GgmlType::Q8_0);
    EXPECT_EQ(ours.tensor("output_norm.weight").type, GgmlType::F32);
}

TEST(Quantize, FallbacksAreReportedByNameAndStrictRefusesThem) {
    auto model = Model::open(shared_dir() + "/models/tiny-qwen2");
    Recipe recipe;
    recipe.default_type = GgmlType::Q4_K;
    recipe.tensors["blk.0.ffn_down.weight"] = GgmlType::Q6_K;
    recipe.tensors["blk.1.ffn_down.weight"] = GgmlType::IQ4_XS;
    recipe.tensors["token_embd.weight"] = GgmlType::Q8_0;
    const fs::path out = tmp_dir() / "tiny-qwen2-mixed.gguf";
    const QuantizeResult r = quantize_model(*model, recipe, opts_for(out));
    const GgufFile f = GgufFile::open(out.string());
    EXPECT_EQ(f.tensor("blk.0.ffn_down.weight").type, GgmlType::Q8_0);    // Q6_K → Q8_0
    EXPECT_EQ(f.tensor("blk.1.ffn_down.weight").type, GgmlType::IQ4_NL);  // IQ4_XS → IQ4_NL
    EXPECT_EQ(f.tensor("blk.0.attn_q.weight").type, GgmlType::Q5_0);      // Q4_K → Q5_0
    EXPECT_EQ(f.tensor("token_embd.weight").type, GgmlType::Q8_0);        // fits: no fallback
    EXPECT_EQ(f.tensor("blk.0.attn_q.bias").type, GgmlType::F32);
    // 2 layers × 7 weights, all with 128- or 352-wide rows; token_embd fits.
    EXPECT_EQ(r.fallbacks.size(), 14u);
    bool found = false;
    for (const auto& fb : r.fallbacks)
        if (fb.find("blk.1.ffn_down.weight: IQ4_XS → IQ4_NL") == 0 &&
            fb.find("352") != std::string::npos)
            found = true;
    EXPECT_TRUE(found);
    EXPECT_EQ(f.get("general.architecture").as_string(), "qwen2");
    EXPECT_EQ(f.get("qwen2.rope.freq_base").as_float(), 1000000.0);
    EXPECT_EQ(f.find("output.weight"), nullptr);
    auto back = Model::open(out.string());
    EXPECT_TRUE(back->config().tie_embeddings);

    QuantizeOptions strict = opts_for(tmp_dir() / "strict.gguf");
    strict.strict = true;
    fs::remove(strict.output_path);
    try {
        quantize_model(*model, recipe, strict);
        FAIL() << "strict quantize accepted a fallback";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("blk.0.ffn_down.weight"), std::string::npos);
    }
    EXPECT_FALSE(fs::exists(strict.output_path));
}

TEST(Quantize, RecipeNamingMissingTensorsIsAnError) {
    auto model = Model::open(shared_dir() + "/models/tiny-qwen2");
    Recipe recipe;
    recipe.tensors["blk.7.attn_q.weight"] = GgmlType::Q4_K;
    recipe.tensors["blk.0.attn_q.weight"] = GgmlType::Q8_0;
    recipe.tensors["output.weight"] = GgmlType::Q6_K;  // tied: tiny-qwen2 has none
    const fs::path out = tmp_dir() / "missing.gguf";
    fs::remove(out);
    const std::string m =
        test_support::error_of([&] { quantize_model(*model, recipe, opts_for(out)); }, "no error");
    EXPECT_NE(m.find("blk.7.attn_q.weight"), std::string::npos) << m;
    EXPECT_NE(m.find("output.weight"), std::string::npos) << m;
    EXPECT_EQ(m.find("blk.0.attn_q.weight"), std::string::npos) << m;
    EXPECT_FALSE(fs::exists(out));

    Recipe norm;
    norm.tensors["blk.0.attn_norm.weight"] = GgmlType::Q4_0;
    EXPECT_THROW(quantize_model(*model, norm, opts_for(out)), Error);

    Recipe needs_imatrix;
    needs_imatrix.tensors["blk.0.attn_q.weight"] = GgmlType::IQ2_XXS;  // 128 → IQ4_NL, fine
    needs_imatrix.tensors["blk.0.ffn_down.weight"] = GgmlType::Q4_0;
    EXPECT_NO_THROW(resolve_tensor_types(*model, needs_imatrix, opts_for(out)));
}

TEST(Quantize, TypesNeedingAnImatrixAreRefusedWithoutOne) {
    auto model = Model::open(shared_dir() + "/models/llama-8m");
    Recipe recipe;
    recipe.default_type = GgmlType::Q8_0;
    recipe.tensors["blk.2.ffn_up.weight"] = GgmlType::IQ2_XXS;
    try {
        resolve_tensor_types(*model, recipe, opts_for(tmp_dir() / "x.gguf"));
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("blk.2.ffn_up.weight"), std::string::npos);
    }
    const Imatrix im = Imatrix::load(shared_dir() + "/data/llama-8m.llamacpp-imatrix.dat");
    QuantizeOptions o = opts_for(tmp_dir() / "x.gguf");
    o.imatrix = &im;
    const auto types = resolve_tensor_types(*model, recipe, o);
    bool seen = false;
    for (const auto& t : types)
        if (t.name == "blk.2.ffn_up.weight") seen = t.written == GgmlType::IQ2_XXS;
    EXPECT_TRUE(seen);
}

TEST(Quantize, ExistingOutputNeedsForce) {
    auto model = Model::open(shared_dir() + "/models/tiny-qwen2");
    Recipe recipe;
    recipe.default_type = GgmlType::Q8_0;
    const fs::path out = tmp_dir() / "exists.gguf";
    {
        std::FILE* f = std::fopen(out.c_str(), "wb");
        std::fputs("keep me", f);
        std::fclose(f);
    }
    QuantizeOptions o = opts_for(out);
    o.force = false;
    EXPECT_THROW(quantize_model(*model, recipe, o), Error);
    EXPECT_EQ(fs::file_size(out), 7u);  // untouched
    o.force = true;
    quantize_model(*model, recipe, o);
    EXPECT_GT(fs::file_size(out), 100000u);
}

TEST(Quantize, WriteFailureLeavesNoFile) {
    auto model = Model::open(shared_dir() + "/models/tiny-qwen2");
    Recipe recipe;
    recipe.default_type = GgmlType::Q8_0;

    // A directory that does not exist.
    const fs::path nodir = tmp_dir() / "no-such-dir" / "out.gguf";
    EXPECT_THROW(quantize_model(*model, recipe, opts_for(nodir)), Error);
    EXPECT_FALSE(fs::exists(nodir));

    // "Disk full" mid-write: cap this process's file size below the output size, so the
    // write fails with EFBIG partway through the data section.
    const fs::path out = tmp_dir() / "full.gguf";
    fs::remove(out);
    rlimit old{};
    ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
    std::signal(SIGXFSZ, SIG_IGN);
    rlimit small = old;
    small.rlim_cur = 200000;  // the Q8_0 file is about 1 MB
    ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
    bool threw = false;
    try {
        quantize_model(*model, recipe, opts_for(out));
    } catch (const Error& e) {
        threw = true;
    }
    setrlimit(RLIMIT_FSIZE, &old);
    EXPECT_TRUE(threw);
    EXPECT_FALSE(fs::exists(out));
    EXPECT_FALSE(fs::exists(out.string() + ".tmp"));
}

TEST(Quantize, ImatrixWeightsTheTensorsItCovers) {
    auto model = Model::open(shared_dir() + "/models/llama-8m");
    const Imatrix im = Imatrix::load(shared_dir() + "/data/llama-8m.llamacpp-imatrix.dat");
    const Recipe recipe = preset_recipe("Q4_K_M", *model, true);
    QuantizeOptions o = opts_for(tmp_dir() / "llama-8m-Q4_K_M-imat.gguf");
    o.imatrix = &im;
    const QuantizeResult r = quantize_model(*model, recipe, o);
    const GgufFile ours = GgufFile::open(o.output_path);
    const GgufFile plain = GgufFile::open(shared_dir() + "/models/llama-8m-Q4_K_M.gguf");
    for (const auto& t : r.tensors) {
        const auto a = ours.tensor_data(ours.tensor(t.name));
        const auto b = plain.tensor_data(plain.tensor(t.name));
        ASSERT_EQ(a.size(), b.size()) << t.name;
        const bool same = std::memcmp(a.data(), b.data(), a.size()) == 0;
        // llama-imatrix records the inputs of every block matmul, not token_embd (a row
        // lookup) nor output (skipped by default): those are quantized as without one.
        const bool covered = im.find(t.name) != nullptr;
        EXPECT_EQ(t.has_importance, covered && t.quantized) << t.name;
        if (t.quantized) {
            EXPECT_EQ(same, !covered) << t.name;
        }
    }
}
