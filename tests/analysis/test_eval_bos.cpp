// BOS in evaluation chunks, against the tokens transformers saw: each family fixture's
// reference.qllogp (scripts/fixtures/make_family_fixtures.py) stores the two chunks of 512
// tokens of eval.txt it computed log-probs for. With add_bos_token true (llama2-sp,
// mistral-metaspace, gemma2/3 with Gemma's Replace-only normalizer) every chunk starts with BOS;
// with it false (phi3-longrope) there is no BOS anywhere, as llama-perplexity does.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "analysis/measure/chunks.h"
#include "analysis/measure/eval.h"
#include "analysis/measure/kld.h"
#include "core/error.h"
#include "core/mmap_file.h"
#include "engine/tokenizer.h"
#include "support/test_data.h"

namespace quantlens {
namespace {

namespace fs = std::filesystem;
using quantlens::test_support::shared_dir;

std::string fixture(const std::string& name) {
    return std::string(QL_SOURCE_DIR) + "/tests/fixtures/" + name;
}

struct Case {
    std::string name;
    bool add_bos;
};

class ChunkTokens : public ::testing::TestWithParam<Case> {};

TEST_P(ChunkTokens, EqualTheTokensTransformersSaw) {
    const Case c = GetParam();
    const Tokenizer tok = Tokenizer::from_hf_json(fixture(c.name) + "/tokenizer.json");
    EXPECT_EQ(tok.add_bos(), c.add_bos);
    const LogitsFile ref(fixture(c.name) + "/reference.qllogp");
    ASSERT_EQ(ref.header().n_ctx, 512u);
    const auto expected = ref.tokens();
    // The first 1024 tokens need only the start of eval.txt (a cut at a line end cannot
    // change them); tokenizing all 1.2 MB would take seconds.
    std::string text = read_text_file(shared_dir() + "/data/eval.txt");
    text.resize(text.find('\n', 30000) + 1);
    const std::string eval_path = QL_TEST_TMP "/eval-head-" + c.name + ".txt";
    fs::create_directories(QL_TEST_TMP);
    std::ofstream(eval_path, std::ios::binary) << text;

    EvalOptions o;
    o.n_ctx = 512;
    o.max_chunks = ref.header().n_chunks;
    const EvalTokens e = make_eval_tokens(tok, text, "eval.txt", o);
    ASSERT_EQ(e.tokens.size(), expected.size());
    EXPECT_TRUE(std::equal(e.tokens.begin(), e.tokens.end(), expected.begin())) << c.name;

    // The sweep/calibrate/compare path (load_eval_chunks) cuts the same chunks.
    const EvalChunks sweep = load_eval_chunks(tok, eval_path, 512, ref.header().n_chunks);
    EXPECT_EQ(sweep.tokens, e.tokens);

    // BOS only where the tokenizer adds it: chunk starts are BOS exactly when add_bos.
    for (uint32_t k = 0; k < ref.header().n_chunks; ++k)
        EXPECT_EQ(e.tokens[k * 512] == tok.bos_id(), c.add_bos) << c.name << " chunk " << k;
}

INSTANTIATE_TEST_SUITE_P(Families, ChunkTokens,
                         ::testing::Values(Case{"llama2-sp", true}, Case{"mistral-metaspace", true},
                                           Case{"gemma2", true}, Case{"gemma3", true},
                                           Case{"phi3-longrope", false}),
                         [](const auto& info) {
                             return test_support::fixture_test_name(info.param.name);
                         });

TEST(ChunkTokens, ATokenizerWithoutBosIsNotRefused) {
    // phi3-longrope's tokenizer with no BOS named anywhere and add_bos_token false.
    const std::string dir = QL_TEST_TMP "/no-bos-tokenizer";
    fs::remove_all(dir);
    fs::create_directories(dir);
    fs::copy(fixture("phi3-longrope") + "/tokenizer.json", dir + "/tokenizer.json");
    std::ofstream(dir + "/tokenizer_config.json")
        << R"({"add_bos_token": false, "eos_token": "</s>"})";
    const Tokenizer tok = Tokenizer::from_hf_json(dir + "/tokenizer.json");
    EXPECT_EQ(tok.bos_id(), -1);
    EXPECT_FALSE(tok.add_bos());
    EvalOptions o;
    o.n_ctx = 64;
    o.max_chunks = 2;
    const EvalTokens e = make_eval_tokens(
        tok, read_text_file(shared_dir() + "/data/eval.txt").substr(0, 4000), "eval.txt", o);
    EXPECT_EQ(e.n_chunks, 2);
    EXPECT_NE(e.tokens[0], 1);  // "<s>" is not put in front
}

TEST(ChunkTokens, AddBosWithoutABosTokenIsRefusedByName) {
    const std::string dir = QL_TEST_TMP "/bos-missing-tokenizer";
    fs::remove_all(dir);
    fs::create_directories(dir);
    fs::copy(fixture("phi3-longrope") + "/tokenizer.json", dir + "/tokenizer.json");
    std::ofstream(dir + "/tokenizer_config.json") << R"({"add_bos_token": true})";
    const Tokenizer tok = Tokenizer::from_hf_json(dir + "/tokenizer.json");
    EvalOptions o;
    o.n_ctx = 64;
    try {
        make_eval_tokens(tok, std::string(2000, 'a'), "eval.txt", o);
        FAIL() << "expected Error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("add_bos_token"), std::string::npos) << e.what();
    }
}

// load_tail_chunks (GPTQ's calibration) cuts the same layout from the END of the text: its
// last whole chunks, BOS put first in each as at the start; all of them when the text holds
// fewer; and a long text's head and tail chunks share no window.
TEST(ChunkTokens, TailChunksAreTheLastWholeChunksOfTheText) {
    const Tokenizer tok = Tokenizer::from_hf_json(shared_dir() + "/models/llama-8m/tokenizer.json");
    const std::string path = shared_dir() + "/data/eval.txt";
    const std::vector<int32_t> all = tok.encode(read_text_file(path), tok.add_bos());
    const int64_t ctx = 512, n = static_cast<int64_t>(all.size());
    const EvalChunks tail = load_tail_chunks(tok, path, ctx, 3);
    ASSERT_EQ(tail.n_chunks, 3);
    ASSERT_EQ(tail.tokens.size(), 3u * ctx);
    for (int64_t c = 0; c < 3; ++c) {
        const int64_t start = n - (3 - c) * ctx;  // the text's own position of this chunk
        if (tok.add_bos())
            EXPECT_EQ(tail.tokens[c * ctx], tok.bos_id());
        else
            EXPECT_EQ(tail.tokens[c * ctx], all[start]);
        for (int64_t i = 1; i < ctx; ++i)
            ASSERT_EQ(tail.tokens[c * ctx + i], all[start + i]) << "chunk " << c << " token " << i;
    }
    const EvalChunks head = load_eval_chunks(tok, path, ctx, 3);
    EXPECT_EQ(count_shared_windows(tail.tokens, ctx, head.tokens, ctx), 0);
    EXPECT_EQ(count_shared_windows(tail.tokens, ctx, tail.tokens, ctx), 3);

    const EvalChunks every = load_tail_chunks(tok, path, ctx, 1000000);
    EXPECT_EQ(every.n_chunks, n / ctx);
    EXPECT_EQ(every.tokens.back(), all.back());
    EXPECT_THROW(load_tail_chunks(tok, path, 1 << 30, 1), Error);  // not one whole chunk
}

}  // namespace
}  // namespace quantlens
