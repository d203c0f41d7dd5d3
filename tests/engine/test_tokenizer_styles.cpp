// The tokenizer against ids from Hugging Face `tokenizers` 0.23 for every tokenizer style in
// tests/fixtures/tokenizers (made by scripts/fixtures/make_family_fixtures.py): eval.txt's
// first 40,000 characters, a hostile Unicode sample and an invalid-UTF-8 sample decoded with
// replacement, in both parse modes; decode(encode(x)) == x exactly where the library's is.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mmap_file.h"
#include "engine/tokenizer.h"
#include "engine/tokenizer_impl.h"

namespace quantlens {
namespace {

const std::string kStyles[] = {"sp-prepend",      "sp-replace",
                               "metaspace-first", "metaspace-always-split",
                               "bl-deepseek3",    "bl-o200k"};

std::string fixture(const std::string& style, const std::string& file) {
    return std::string(QL_SOURCE_DIR) + "/tests/fixtures/tokenizers/" + style + "/" + file;
}

// The eval sample is the first 40,000 code points (Python characters) of eval.txt.
std::string first_code_points(const std::string& s, size_t n) {
    size_t i = 0;
    for (size_t k = 0; k < n && i < s.size(); ++k)
        i += tok::utf8_len(static_cast<unsigned char>(s[i]));
    return s.substr(0, i);
}

class Styles : public ::testing::TestWithParam<std::string> {};

TEST_P(Styles, IdsAndRoundTripMatchTheLibrary) {
    const std::string style = GetParam();
    const Tokenizer tok = Tokenizer::from_hf_json(fixture(style, "tokenizer.json"));
    const auto ref = nlohmann::json::parse(read_text_file(fixture(style, "ids.json")));
    const std::string eval =
        first_code_points(read_text_file(std::string(QL_SHARED_DIR) + "/data/eval.txt"),
                          ref.at("eval_chars").get<size_t>());
    const std::pair<std::string, std::string> texts[] = {
        {"eval", eval},
        {"hostile", ref.at("hostile_text").get<std::string>()},
        {"invalid", ref.at("invalid_decoded_with_replace").get<std::string>()}};
    for (const auto& [name, text] : texts) {
        const auto plain = ref.at(name + "_ids").get<std::vector<int32_t>>();
        const auto special = ref.at(name + "_ids_special").get<std::vector<int32_t>>();
        const auto ours_plain = tok.encode(text, false, false);
        const auto ours_special = tok.encode(text, false, true);
        EXPECT_EQ(ours_plain, plain) << style << " " << name << " (special text as plain text)";
        EXPECT_EQ(ours_special, special) << style << " " << name << " (added tokens parsed)";
        const bool roundtrip = ref.at(name + "_roundtrip").get<bool>();
        EXPECT_EQ(tok.decode(plain) == text, roundtrip)
            << style << " " << name << ": decode(encode(x)) == x should be " << roundtrip;
    }
    EXPECT_TRUE(tok.add_bos());  // tokenizer_config.json says add_bos_token true
    EXPECT_GE(tok.bos_id(), 0);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Styles, ::testing::ValuesIn(kStyles), [](const auto& info) {
    std::string n = info.param;
    for (char& c : n)
        if (c == '-') c = '_';
    return n;
});

}  // namespace
}  // namespace quantlens
