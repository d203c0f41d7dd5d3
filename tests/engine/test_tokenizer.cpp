// Tokenizer against golden ids from Hugging Face `tokenizers` (data/tokenizer-golden.json),
// loaded both from tokenizer.json and from the llama.cpp-written GGUF.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mmap_file.h"
#include "engine/tokenizer.h"
#include "formats/gguf.h"
#include "support/test_data.h"

namespace quantlens {
namespace {

using quantlens::test_support::shared_dir;

void expect_golden(const Tokenizer& tok) {
    const auto golden =
        nlohmann::json::parse(read_text_file(shared_dir() + "/data/tokenizer-golden.json"));
    ASSERT_GE(golden.size(), 10u);
    for (const auto& c : golden) {
        const std::string text = c.at("text");
        const auto ids = c.at("ids").get<std::vector<int32_t>>();
        const auto with_bos = c.at("ids_with_bos").get<std::vector<int32_t>>();
        EXPECT_EQ(tok.encode(text, false), ids) << "text: " << text;
        EXPECT_EQ(tok.encode(text, true), with_bos) << "text: " << text;
        EXPECT_EQ(tok.decode(ids), text);
    }
}

TEST(Tokenizer, HfJsonMatchesGolden) {
    const Tokenizer tok = Tokenizer::from_hf_json(shared_dir() + "/models/llama-8m/tokenizer.json");
    EXPECT_EQ(tok.vocab_size(), 4096);
    EXPECT_EQ(tok.bos_id(), 0);
    EXPECT_EQ(tok.eos_id(), 1);
    expect_golden(tok);
}

TEST(Tokenizer, GgufMatchesGolden) {
    const GgufFile gguf = GgufFile::open(shared_dir() + "/models/llama-8m-Q4_K_M.gguf");
    const Tokenizer tok = Tokenizer::from_gguf(gguf);
    EXPECT_EQ(tok.vocab_size(), 4096);
    EXPECT_EQ(tok.bos_id(), 0);
    expect_golden(tok);
}

TEST(Tokenizer, BothSourcesAgreeOnEvalText) {
    const Tokenizer hf = Tokenizer::from_hf_json(shared_dir() + "/models/llama-8m/tokenizer.json");
    const GgufFile gguf = GgufFile::open(shared_dir() + "/models/llama-8m-Q4_K_M.gguf");
    const Tokenizer gg = Tokenizer::from_gguf(gguf);
    std::string text = read_text_file(shared_dir() + "/data/eval.txt").substr(0, 200000);
    while (!text.empty() && (static_cast<unsigned char>(text.back()) & 0xc0) == 0x80)
        text.pop_back();
    text.pop_back();  // drop a possibly cut lead byte
    const auto a = hf.encode(text, true), b = gg.encode(text, true);
    EXPECT_EQ(a, b);
    EXPECT_GT(a.size(), 30000u);
    // golden.json's input_ids are BOS + the first 63 tokens of eval.txt.
    const auto golden =
        nlohmann::json::parse(read_text_file(shared_dir() + "/models/llama-8m/golden.json"));
    const auto ids = golden.at("input_ids").get<std::vector<int32_t>>();
    ASSERT_EQ(ids.size(), 64u);
    EXPECT_EQ(std::vector<int32_t>(a.begin(), a.begin() + 64), ids);
}

TEST(Tokenizer, SpecialTokensOnlyWhenAsked) {
    const Tokenizer tok = Tokenizer::from_hf_json(shared_dir() + "/models/llama-8m/tokenizer.json");
    const auto parsed = tok.encode("a<|end_of_text|>", false, true);
    EXPECT_EQ(parsed, (std::vector<int32_t>{66, 1}));
    const auto plain = tok.encode("a<|end_of_text|>", false, false);
    EXPECT_GT(plain.size(), 3u);
    EXPECT_EQ(tok.decode(plain), "a<|end_of_text|>");
}

TEST(Tokenizer, BadInputIsAClearError) {
    const std::string dir = QL_TEST_TMP "/tokenizer";
    std::filesystem::create_directories(dir);
    EXPECT_THROW(Tokenizer::from_hf_json(dir + "/missing/tokenizer.json"), Error);
    { std::ofstream(dir + "/tokenizer.json") << R"({"model": {"type": "Unigram", "vocab": []}})"; }
    try {
        Tokenizer::from_hf_json(dir + "/tokenizer.json");
        FAIL() << "expected Error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("Unigram"), std::string::npos) << e.what();
    }
    const Tokenizer tok = Tokenizer::from_hf_json(shared_dir() + "/models/llama-8m/tokenizer.json");
    EXPECT_THROW(tok.encode("bad \xff utf8", false), Error);
}

}  // namespace
}  // namespace quantlens
