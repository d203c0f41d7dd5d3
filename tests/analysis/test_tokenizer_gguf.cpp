// The GGUF side of every tokenizer style: tokenizer_metadata() writes the vocabulary
// llama.cpp's converter writes for the tokenizer.json (SentencePiece "llama" for byte_fallback
// BPE, "gpt2" with its pre-tokenizer name otherwise), and Tokenizer::from_gguf reads it back
// the way llama.cpp tokenizes; the ids must equal the tokenizers library's (ids.json).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "analysis/write/gguf_metadata.h"
#include "core/error.h"
#include "core/mmap_file.h"
#include "engine/tokenizer.h"
#include "engine/tokenizer_impl.h"
#include "formats/gguf.h"
#include "support/test_data.h"

namespace quantlens {
namespace {

namespace fs = std::filesystem;
using quantlens::test_support::shared_dir;

std::string fixture(const std::string& style, const std::string& file) {
    return std::string(QL_SOURCE_DIR) + "/tests/fixtures/tokenizers/" + style + "/" + file;
}

struct Case {
    std::string style;
    std::string gguf_model, gguf_pre;
    // Whether llama.cpp's ids equal the library's on the hostile text (plain, parsed). They
    // differ where llama.cpp itself does: the GPT-2 converter path types "<|user|>" (a
    // non-special added token) as control because it looks special, so plain text does not
    // match it;
    // llama.cpp puts a space before any text that follows an added token, unconditionally,
    // where Metaspace prepends only to text not starting with a space ("always") or only at
    // the start ("first"), and a normalized added token with Prepend matches "▁<|user|>".
    bool hostile_plain_equal, hostile_special_equal;
};

class GgufVocab : public ::testing::TestWithParam<Case> {};

TEST_P(GgufVocab, ReadBackTokenizesLikeTheLibrary) {
    const Case c = GetParam();
    const GgufKvList kv = tokenizer_metadata(fixture(c.style, "tokenizer.json"), 0, -1, -1);
    GgufWriter w;
    for (const auto& [k, v] : kv) w.add_kv(k, v);
    const std::string path = QL_TEST_TMP "/vocab-" + c.style + ".gguf";
    fs::create_directories(QL_TEST_TMP);
    w.write(path, Overwrite::replace);
    const GgufFile gguf = GgufFile::open(path);
    EXPECT_EQ(gguf.get("tokenizer.ggml.model").as_string(), c.gguf_model);
    EXPECT_EQ(gguf.get("tokenizer.ggml.pre").as_string(), c.gguf_pre);

    const Tokenizer tok = Tokenizer::from_gguf(gguf);
    EXPECT_TRUE(tok.add_bos());
    const auto ref = nlohmann::json::parse(read_text_file(fixture(c.style, "ids.json")));
    std::string eval = read_text_file(shared_dir() + "/data/eval.txt");
    size_t i = 0;
    for (size_t k = 0; k < ref.at("eval_chars").get<size_t>(); ++k)
        i += tok::utf8_len(static_cast<unsigned char>(eval[i]));
    eval.resize(i);
    EXPECT_EQ(tok.encode(eval, false, false), ref.at("eval_ids").get<std::vector<int32_t>>());
    EXPECT_EQ(tok.encode(eval, false, true),
              ref.at("eval_ids_special").get<std::vector<int32_t>>());
    const std::string hostile = ref.at("hostile_text");
    for (bool special : {false, true}) {
        const auto ids = ref.at(special ? "hostile_ids_special" : "hostile_ids");
        EXPECT_EQ(tok.encode(hostile, false, special) == ids.get<std::vector<int32_t>>(),
                  special ? c.hostile_special_equal : c.hostile_plain_equal)
            << c.style << " parse_special " << special;
    }
}

INSTANTIATE_TEST_SUITE_P(
    Styles, GgufVocab,
    ::testing::Values(Case{"sp-prepend", "llama", "default", false, false},
                      Case{"sp-replace", "llama", "default", true, true},
                      Case{"metaspace-first", "llama", "default", false, false},
                      Case{"metaspace-always-split", "llama", "default", false, false},
                      Case{"bl-deepseek3", "gpt2", "deepseek-v3", false, true},
                      Case{"bl-o200k", "gpt2", "gpt-4o", false, true}),
    [](const auto& info) { return test_support::fixture_test_name(info.param.style); });

TEST(GgufVocab, AddBosFromThePostProcessorIsWrittenWhereLlamaCppWouldNotAddIt) {
    // o200k ("gpt-4o": llama.cpp adds no BOS by default) with a template that starts with BOS
    // and no add_bos_token in tokenizer_config.json: the GGUF must say add_bos_token true.
    const std::string dir = QL_TEST_TMP "/template-bos";
    fs::create_directories(dir);
    auto doc = nlohmann::json::parse(read_text_file(fixture("bl-o200k", "tokenizer.json")));
    doc["post_processor"] = nlohmann::json::parse(
        R"({"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<|startoftext|>",
        "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}], "pair": [], "special_tokens": {}})");
    std::ofstream(dir + "/tokenizer.json") << doc.dump();
    std::ofstream(dir + "/tokenizer_config.json") << R"({"bos_token": "<|startoftext|>"})";
    EXPECT_TRUE(Tokenizer::from_hf_json(dir + "/tokenizer.json").add_bos());
    bool written = false;
    for (const auto& [k, v] : tokenizer_metadata(dir + "/tokenizer.json", 0, -1, -1))
        if (k == "tokenizer.ggml.add_bos_token") written = v.as_bool();
    EXPECT_TRUE(written);
    // Without the template the default (no BOS) agrees and nothing is written.
    std::ofstream(dir + "/tokenizer.json")
        << nlohmann::json::parse(read_text_file(fixture("bl-o200k", "tokenizer.json"))).dump();
    for (const auto& [k, v] : tokenizer_metadata(dir + "/tokenizer.json", 0, -1, -1))
        EXPECT_NE(k, "tokenizer.ggml.add_bos_token");
}

TEST(GgufVocab, HeapMergesEqualTheReferenceLoop) {
    // merge_symbols (heap) against merge_symbols_reference (rescan) on whole-text words.
    const Tokenizer tok = Tokenizer::from_hf_json(fixture("sp-replace", "tokenizer.json"));
    std::string text = read_text_file(shared_dir() + "/data/eval.txt").substr(0, 3000);
    while ((static_cast<unsigned char>(text.back()) & 0xc0) == 0x80) text.pop_back();
    text.pop_back();
    const Tokenizer::Impl& im = *tok.impl_for_tests();
    std::vector<int32_t> a, b;
    im.initial_symbols(im.normalize(text), a);
    b = a;
    ASSERT_GT(a.size(), 1000u);
    const size_t before = a.size();
    merge_symbols(im, a);
    merge_symbols_reference(im, b);
    EXPECT_EQ(a, b);
    EXPECT_LT(a.size() * 4, before * 3);  // merges happened
}

TEST(GgufVocab, UnsupportedPiecesAreRefusedByName) {
    const std::string dir = QL_TEST_TMP "/tokenizer-refusals";
    fs::create_directories(dir);
    auto refused = [&](const std::string& json, const std::string& what) {
        std::ofstream(dir + "/tokenizer.json") << json;
        try {
            Tokenizer::from_hf_json(dir + "/tokenizer.json");
            ADD_FAILURE() << "expected Error for " << what;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
        }
    };
    const std::string model = R"("model": {"type": "BPE", "vocab": {"a": 0}, "merges": []})";
    refused("{" + model + R"(, "normalizer": {"type": "NFKC"}})", "NFKC");
    refused("{" + model + R"(, "pre_tokenizer": {"type": "Whitespace"}})", "Whitespace");
    refused("{" + model + R"(, "decoder": {"type": "WordPiece"}})", "WordPiece");
    refused(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "dropout": 0.1}})",
            "dropout");
    refused(R"({"model": {"type": "WordPiece", "vocab": {"a": 0}}})", "WordPiece");
    refused("{" + model + R"(, "normalizer": {"type": "Replace", "pattern": {"Regex": " +"},
            "content": "x"}})",
            "Regex");
}

}  // namespace
}  // namespace quantlens
