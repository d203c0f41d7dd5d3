// Loads a GGUF file's tokenizer.ggml.* vocabulary the way llama.cpp's llama-vocab.cpp
// reads it: "gpt2" (byte-level BPE with merges and a named pre-tokenizer) or "llama"
// (SentencePiece: scores, token types, byte tokens). Also the pre-tokenizer preset table.
#include <algorithm>

#include "core/error.h"
#include "engine/tokenizer_impl.h"
#include "formats/gguf.h"

namespace quantlens {

using namespace tok;

const char* const kLlama3PretokenizerRegex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kGpt2PretokenizerRegex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

namespace {

// Qwen2's: Llama-3's with single digits instead of runs of up to three.
const char* const kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// gpt-oss / GPT-4o (o200k).
const char* const kO200kRegex =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// DeepSeek-V3: digits, CJK/kana runs, then words/punctuation/whitespace.
const char* const kDeepseekV3Regexes[] = {
    R"(\p{N}{1,3})",
    "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+",
    R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"};

// llama.cpp's token types (llama_token_type / gguf-py TokenType).
constexpr int64_t kTypeUnknown = 2, kTypeControl = 3, kTypeUserDefined = 4, kTypeByte = 6;

}  // namespace

const std::vector<PretokenizerPreset>& pretokenizer_presets() {
    static const std::vector<PretokenizerPreset> presets = {
        {"llama-bpe", {"llama3", "llama-v3"}, {kLlama3PretokenizerRegex}, true, true},
        {"smaug-bpe", {}, {kLlama3PretokenizerRegex}, false, false},
        {"qwen2", {}, {kQwen2Regex}, false, false},
        {"gpt-2", {"gpt2"}, {kGpt2PretokenizerRegex}, false, false},
        {"deepseek-v3",
         {},
         {kDeepseekV3Regexes[0], kDeepseekV3Regexes[1], kDeepseekV3Regexes[2]},
         false,
         false},
        {"gpt-4o", {}, {kO200kRegex}, false, false},
    };
    return presets;
}

const PretokenizerPreset* find_pretokenizer_preset(const std::vector<std::string>& regexes) {
    for (const PretokenizerPreset& p : pretokenizer_presets())
        if (p.regexes == regexes) return &p;
    return nullptr;
}

Tokenizer Tokenizer::from_gguf(const GgufFile& gguf) {
    const std::string& path = gguf.path();
    const GgufValue* model = gguf.find("tokenizer.ggml.model");
    const GgufValue* tokens = gguf.find("tokenizer.ggml.tokens");
    QL_CHECK(model && tokens, "missing tokenizer: {} has no tokenizer.ggml.model/tokens", path);
    const std::string model_name = model->as_string();
    QL_CHECK(model_name == "gpt2" || model_name == "llama",
             "{}: tokenizer.ggml.model '{}' is not supported (expected gpt2 or llama)", path,
             model_name);
    auto im = std::make_unique<Impl>();
    im->source = path;
    const std::vector<std::string> texts = tokens->as_string_array();
    const auto n = static_cast<int64_t>(texts.size());
    std::vector<int64_t> types;
    if (const GgufValue* t = gguf.find("tokenizer.ggml.token_type")) types = t->as_int_array();
    QL_CHECK(types.empty() || types.size() == texts.size(),
             "{}: tokenizer.ggml.token_type has {} entries, tokenizer.ggml.tokens has {}", path,
             types.size(), texts.size());
    for (size_t i = 0; i < texts.size(); ++i) {
        im->add_token(static_cast<int32_t>(i), texts[i]);
        // llama.cpp splits on control, user-defined and unknown tokens first; without
        // parse_special only user-defined ones.
        const int64_t type = types.empty() ? 1 : types[i];
        if (type == kTypeControl || type == kTypeUserDefined || type == kTypeUnknown)
            im->added.push_back({texts[i],
                                 static_cast<int32_t>(i),
                                 type != kTypeUserDefined,
                                 false,
                                 false,
                                 false,
                                 {}});
    }
    auto flag = [&](const char* key, bool fallback) {
        const GgufValue* v = gguf.find(key);
        return v ? v->as_bool() : fallback;
    };
    auto special_id = [&](const char* key, int32_t fallback) -> int32_t {
        const GgufValue* v = gguf.find(key);
        if (!v) return fallback < n ? fallback : -1;
        const int64_t id = v->as_int();
        QL_CHECK(id >= 0 && id < n, "{}: {} = {} is outside the vocabulary of {} tokens", path, key,
                 id, n);
        return static_cast<int32_t>(id);
    };

    if (model_name == "gpt2") {
        im->kind = ModelKind::ByteLevelBpe;
        im->decoders.push_back({DecoderStep::Kind::ByteLevel, "", "", 0, 0, true});
        if (const GgufValue* merges = gguf.find("tokenizer.ggml.merges")) {
            int32_t rank = 0;
            for (const std::string& s : merges->as_string_array()) {
                const size_t sp = s.find(' ', 1);
                QL_CHECK(sp != std::string::npos, "{}: tokenizer.ggml.merges[{}] '{}' has no space",
                         path, rank, s);
                im->add_merge(s.substr(0, sp), s.substr(sp + 1), rank++);
            }
        }
        const GgufValue* pre = gguf.find("tokenizer.ggml.pre");
        const std::string pre_name = pre ? pre->as_string() : "gpt2";
        const PretokenizerPreset* preset = nullptr;
        std::string known;
        for (const PretokenizerPreset& p : pretokenizer_presets()) {
            known += (known.empty() ? "" : ", ") + p.gguf_pre;
            if (p.gguf_pre == pre_name ||
                std::find(p.aliases.begin(), p.aliases.end(), pre_name) != p.aliases.end())
                preset = &p;
        }
        QL_CHECK(preset, "{}: tokenizer.ggml.pre '{}' is not supported (supported: {})", path,
                 pre_name, known);
        for (const std::string& r : preset->regexes)
            im->splits.push_back(std::make_unique<Regex>(r, path));
        im->ignore_merges = preset->ignore_merges;
        im->add_bos = flag("tokenizer.ggml.add_bos_token", preset->add_bos);
        im->bos = special_id("tokenizer.ggml.bos_token_id", -1);
        im->eos = special_id("tokenizer.ggml.eos_token_id", -1);
    } else {
        // SentencePiece as llama.cpp runs it; defaults as llama-vocab.cpp's (BOS 1, EOS 2,
        // UNK 0, add_bos true, a space before the text).
        im->kind = ModelKind::ScoredBigrams;
        im->scores.assign(texts.size(), 0.0f);
        if (const GgufValue* s = gguf.find("tokenizer.ggml.scores")) {
            const std::vector<double> v = s->as_float_array();
            QL_CHECK(v.size() == texts.size(),
                     "{}: tokenizer.ggml.scores has {} entries, tokenizer.ggml.tokens has {}", path,
                     v.size(), texts.size());
            for (size_t i = 0; i < v.size(); ++i) im->scores[i] = static_cast<float>(v[i]);
        }
        im->add_space_prefix = flag("tokenizer.ggml.add_space_prefix", true);
        im->add_bos = flag("tokenizer.ggml.add_bos_token", true);
        im->bos = special_id("tokenizer.ggml.bos_token_id", 1);
        im->eos = special_id("tokenizer.ggml.eos_token_id", 2);
        im->unk = special_id("tokenizer.ggml.unknown_token_id", 0);
        im->decoders.push_back({DecoderStep::Kind::Replace, "\xe2\x96\x81", " ", 0, 0, true});
        im->decoders.push_back({DecoderStep::Kind::ByteFallback, "", "", 0, 0, true});
        im->decoders.push_back({DecoderStep::Kind::Fuse, "", "", 0, 0, true});
        if (im->add_space_prefix)
            im->decoders.push_back({DecoderStep::Kind::Strip, " ", "", 1, 0, true});
        for (size_t i = 0; i < types.size(); ++i)
            QL_CHECK(types[i] != kTypeByte || texts[i].size() == 6,
                     "{}: byte token {} is '{}', expected <0xNN>", path, i, texts[i]);
    }
    im->finish();
    return Tokenizer(std::move(im));
}

}  // namespace quantlens
