// Llama-2 and Mistral with SentencePiece-style tokenizers, end to end against transformers:
// tests/fixtures/llama2-sp (Prepend + Replace normalizers, byte_fallback BPE) and
// mistral-metaspace (Metaspace, prepend_scheme first) hold tiny trained models, their
// tokenizers and transformers' float64 log-probs over two chunks of 512 tokens of eval.txt
// (scripts/fixtures/make_family_fixtures.py). eval must reach the same tokens (the base file
// refuses others) and the same log-probs; a Q8_0 GGUF written from them must carry a
// SentencePiece vocabulary ("llama") that tokenizes like the tokenizer.json.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "analysis/measure/kld.h"
#include "core/mmap_file.h"
#include "engine/engine.h"
#include "engine/tokenizer.h"
#include "engine/tokenizer_impl.h"
#include "formats/gguf.h"
#include "model/model.h"
#include "support/cli_run.h"

namespace quantlens {
namespace {

using cli_testing::fresh_dir;
using cli_testing::run_quiet;
using cli_testing::shared_path;
namespace fs = std::filesystem;

// Issue acceptance: mean KLD ≤ 1e-4 against transformers' float64 log-probs.
constexpr double kMaxMeanKld = 1e-4;
// Q8_0 against the BF16 model's reference: measured 1.7e-4 on llama2-sp.
constexpr double kMaxMeanKldQ8 = 1e-3;

std::string fixture(const std::string& name) {
    return std::string(QL_SOURCE_DIR) + "/tests/fixtures/" + name;
}

// `ref`: a base log-prob file (reference.qllogp of a fixture).
nlohmann::json eval_against_reference(const std::string& model, const std::string& ref) {
    return cli_testing::eval_against(model, ref);
}

class SentencePieceModels : public ::testing::TestWithParam<std::string> {};

TEST_P(SentencePieceModels, EvalMatchesTransformers) {
    const auto j =
        eval_against_reference(fixture(GetParam()), fixture(GetParam()) + "/reference.qllogp");
    EXPECT_LE(j["kld"]["mean"].get<double>(), kMaxMeanKld) << j.dump(2);
    EXPECT_GE(j["same_top1_pct"].get<double>(), 99.0);
    // transformers' PPL over the same tokens (scripts/fixtures/logs/make_family_fixtures.log).
    const double ref_ppl = GetParam() == "llama2-sp" ? 31.2804 : 44.1649;
    EXPECT_NEAR(j["ppl"].get<double>(), ref_ppl, 1e-3) << j.dump(2);
}

TEST_P(SentencePieceModels, LogitsMatchTransformers) {
    // logits_head.f32: transformers' float64 logits of chunk 0's first 32 positions.
    constexpr float kLogitAbsTol = 2e-3f;  // issue acceptance
    const std::string dir = fixture(GetParam());
    const LogitsFile ref(dir + "/reference.qllogp");
    const std::vector<int32_t> ids(ref.tokens().begin(), ref.tokens().begin() + 32);
    const auto model = Model::open(dir);
    Engine engine(*model);
    const int64_t V = engine.vocab();
    const std::vector<float> logits = engine.forward(ids, 1, 32);
    MappedFile head(dir + "/logits_head.f32");
    ASSERT_EQ(head.size(), 32 * V * sizeof(float));
    const auto* expected = reinterpret_cast<const float*>(head.data());
    float max_diff = 0;
    for (int64_t i = 0; i < 32 * V; ++i)
        max_diff = std::max(max_diff, std::fabs(logits[i] - expected[i]));
    EXPECT_LE(max_diff, kLogitAbsTol) << GetParam();
    std::printf("%s: max |logit diff| = %.3g\n", GetParam().c_str(), max_diff);
}

TEST_P(SentencePieceModels, Q8GgufKeepsTheTokenizer) {
    const std::string name = GetParam();
    const std::string out = fresh_dir("sp-gguf-" + name) + "/model-Q8_0.gguf";
    const auto q = run_quiet("quantize " + fixture(name) + " --preset Q8_0 --summary -o " + out);
    ASSERT_EQ(q.code, 0) << q.out;

    // The vocabulary llama.cpp's converter writes for a byte_fallback tokenizer.json.
    const GgufFile gguf = GgufFile::open(out);
    EXPECT_EQ(gguf.get("tokenizer.ggml.model").as_string(), "llama");
    EXPECT_EQ(gguf.get("tokenizer.ggml.pre").as_string(), "default");
    const auto tokens = gguf.get("tokenizer.ggml.tokens").as_string_array();
    const auto types = gguf.get("tokenizer.ggml.token_type").as_int_array();
    ASSERT_EQ(tokens.size(), 512u);  // the model's vocabulary
    ASSERT_EQ(types.size(), tokens.size());
    EXPECT_EQ(gguf.get("tokenizer.ggml.scores").as_float_array().size(), tokens.size());
    EXPECT_EQ(tokens[3 + 0x41], "<0x41>");
    EXPECT_EQ(types[3 + 0x41], 6);  // byte
    EXPECT_EQ(types[1], 3);         // <s>: control
    EXPECT_EQ(types[300], 1);       // a merged token: normal
    EXPECT_EQ(gguf.get("tokenizer.ggml.bos_token_id").as_int(), 1);
    EXPECT_EQ(gguf.get("tokenizer.ggml.eos_token_id").as_int(), 2);
    EXPECT_EQ(gguf.get("tokenizer.ggml.unknown_token_id").as_int(), 0);
    EXPECT_TRUE(gguf.get("tokenizer.ggml.add_bos_token").as_bool());
    EXPECT_FALSE(gguf.get("tokenizer.ggml.add_eos_token").as_bool());

    // Read back as llama.cpp reads it, the ids equal the tokenizer.json's.
    const Tokenizer hf = Tokenizer::from_hf_json(fixture(name) + "/tokenizer.json");
    const Tokenizer gg = Tokenizer::from_gguf(gguf);
    EXPECT_EQ(gg.add_bos(), hf.add_bos());
    EXPECT_EQ(gg.bos_id(), hf.bos_id());
    std::string text = read_text_file(shared_path("data/eval.txt"));
    text.resize(text.find('\n', 40000) + 1);
    for (bool special : {false, true}) {
        const auto a = hf.encode(text, true, special), b = gg.encode(text, true, special);
        EXPECT_EQ(a, b) << name << " parse_special " << special;
        EXPECT_GT(a.size(), 20000u);
        EXPECT_EQ(gg.decode(std::span(b).subspan(1)), text);
    }

    // eval of the GGUF reaches the reference's tokens and stays close to it.
    const auto j = eval_against_reference(out, fixture(name) + "/reference.qllogp");
    EXPECT_LE(j["kld"]["mean"].get<double>(), kMaxMeanKldQ8) << j.dump(2);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, SentencePieceModels,
                         ::testing::Values("llama2-sp", "mistral-metaspace"), [](const auto& info) {
                             std::string n = info.param;
                             for (char& c : n)
                                 if (c == '-') c = '_';
                             return n;
                         });

// The Gemma 2, Gemma 3 and Phi-3 fixtures through the CLI: their tokenizers (Gemma's Replace
// normalizer; Phi-3 with add_bos_token false, so no BOS at all) and architectures together give
// transformers' tokens and log-probs. Gemma 2's reference is transformers' eager attention
// (sdpa drops its attention soft-capping; scripts/fixtures/remake_gemma2_eager_reference.py).
struct FamilyFixture {
    const char* name;
    const char* reference;
    double transformers_ppl;  // scripts/fixtures/logs/
};

class FamilyEndToEnd : public ::testing::TestWithParam<FamilyFixture> {};

TEST_P(FamilyEndToEnd, EvalMatchesTransformers) {
    const FamilyFixture& f = GetParam();
    const auto j = eval_against_reference(fixture(f.name), fixture(f.name) + "/" + f.reference);
    EXPECT_LE(j["kld"]["mean"].get<double>(), kMaxMeanKld) << j.dump(2);
    EXPECT_GE(j["same_top1_pct"].get<double>(), 99.0);
    EXPECT_NEAR(j["ppl"].get<double>(), f.transformers_ppl, 1e-3 * f.transformers_ppl) << f.name;
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, FamilyEndToEnd,
    ::testing::Values(FamilyFixture{"gemma2", "reference-eager.qllogp", 81.7364},
                      FamilyFixture{"gemma3", "reference.qllogp", 27.6157},
                      FamilyFixture{"phi3-longrope", "reference.qllogp", 108.0525},
                      FamilyFixture{"gemma4", "reference.qllogp", 24.4645},
                      FamilyFixture{"gemma4-moe", "reference.qllogp", 28.7037}),
    [](const auto& info) { return test_support::fixture_test_name(info.param.name); });

}  // namespace
}  // namespace quantlens
