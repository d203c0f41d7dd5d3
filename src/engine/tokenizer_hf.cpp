// Loads a Hugging Face tokenizer.json (and tokenizer_config.json / config.json next to it)
// into the pipeline of tokenizer_impl.h; anything we do not implement is refused by key and
// value.
#include <filesystem>
#include <optional>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mmap_file.h"
#include "engine/tokenizer_impl.h"

namespace quantlens {

using namespace tok;
using nlohmann::json;

namespace {

json parse_json_file(const std::string& path) {
    try {
        return json::parse(read_text_file(path));
    } catch (const json::exception& e) {
        fail("{}: not valid JSON: {}", path, e.what());
    }
}

std::string type_of(const json& j) {
    return j.is_object() && j.contains("type") && j["type"].is_string()
               ? j["type"].get<std::string>()
               : j.dump();
}

// A Replace/Split pattern: {"String": s} is taken literally; {"Regex": r} only where the
// caller supports regexes.
std::string literal_pattern(const json& step, const std::string& where, const std::string& path) {
    const json& p = step.at("pattern");
    QL_CHECK(p.contains("String"),
             "{}: {} with pattern {} is not supported (only a literal {{\"String\": ...}})", path,
             where, p.dump());
    return p.at("String").get<std::string>();
}

// tokenizers stores Metaspace's replacement and Strip's content as one character.
std::string one_character(const json& v, const std::string& what, const std::string& path) {
    const std::string s = v.get<std::string>();
    QL_CHECK(!s.empty() && utf8_len(static_cast<unsigned char>(s[0])) == s.size(),
             "{}: {} '{}' must be exactly one character", path, what, s);
    return s;
}

void add_normalizer(Tokenizer::Impl& im, const json& n, const std::string& path) {
    if (n.is_null()) return;
    const std::string type = type_of(n);
    if (type == "Sequence") {
        for (const json& s : n.at("normalizers")) add_normalizer(im, s, path);
    } else if (type == "Prepend") {
        im.normalizer.push_back({NormalizerStep::Kind::Prepend, "", n.at("prepend")});
    } else if (type == "Replace") {
        im.normalizer.push_back({NormalizerStep::Kind::Replace,
                                 literal_pattern(n, "normalizer Replace", path), n.at("content")});
    } else {
        // NFC/NFKC/NFD, Lowercase, Strip, Precompiled, BertNormalizer...: each would change
        // the ids of some text, so none is ignored.
        fail(
            "{}: normalizer type '{}' is not supported (supported: Prepend, Replace with a "
            "literal pattern, Sequence of those)",
            path, type);
    }
}

void add_pretokenizer(Tokenizer::Impl& im, const json& pt, const std::string& path,
                      bool in_sequence) {
    if (pt.is_null()) return;
    const std::string type = type_of(pt);
    if (type == "Sequence") {
        for (const json& p : pt.at("pretokenizers")) add_pretokenizer(im, p, path, true);
    } else if (type == "Split") {
        const std::string behavior = pt.value("behavior", "Isolated");
        QL_CHECK(behavior == "Isolated" && !pt.value("invert", false),
                 "{}: pre_tokenizer Split with behavior '{}' (invert {}) is not supported; "
                 "expected Isolated",
                 path, behavior, pt.value("invert", false));
        const json& pattern = pt.at("pattern");
        std::string regex;
        if (pattern.contains("Regex")) {
            regex = pattern.at("Regex").get<std::string>();
        } else {
            regex = "\\Q" + pattern.at("String").get<std::string>() + "\\E";
        }
        im.splits.push_back(std::make_unique<Regex>(regex, path));
    } else if (type == "ByteLevel") {
        QL_CHECK(!pt.value("add_prefix_space", false),
                 "{}: pre_tokenizer ByteLevel with add_prefix_space true is not supported", path);
        im.kind = ModelKind::ByteLevelBpe;
        if (pt.value("use_regex", true))
            im.splits.push_back(std::make_unique<Regex>(kGpt2PretokenizerRegex, path));
    } else if (type == "Metaspace") {
        QL_CHECK(!in_sequence, "{}: a Metaspace pre_tokenizer inside a Sequence is not supported",
                 path);
        Metaspace& m = im.metaspace;
        m.replacement = one_character(pt.value("replacement", json("\xe2\x96\x81")),
                                      "Metaspace replacement", path);
        m.split = pt.value("split", true);
        if (pt.contains("prepend_scheme")) {
            const std::string scheme = pt.at("prepend_scheme").get<std::string>();
            if (scheme == "first")
                m.prepend = Metaspace::Prepend::First;
            else if (scheme == "always")
                m.prepend = Metaspace::Prepend::Always;
            else if (scheme == "never")
                m.prepend = Metaspace::Prepend::Never;
            else
                fail("{}: Metaspace prepend_scheme '{}' is not supported (first, always, never)",
                     path, scheme);
        } else {  // files older than prepend_scheme
            m.prepend = pt.value("add_prefix_space", true) ? Metaspace::Prepend::Always
                                                           : Metaspace::Prepend::Never;
        }
        im.metaspace_enabled = true;
    } else {
        fail(
            "{}: pre_tokenizer type '{}' is not supported (supported: Split, ByteLevel, "
            "Metaspace, Sequence)",
            path, type);
    }
}

void add_decoder(Tokenizer::Impl& im, const json& d, const std::string& path) {
    if (d.is_null()) return;
    const std::string type = type_of(d);
    DecoderStep step{DecoderStep::Kind::Fuse, "", "", 0, 0, true};
    if (type == "Sequence") {
        for (const json& s : d.at("decoders")) add_decoder(im, s, path);
        return;
    } else if (type == "ByteLevel") {
        step.kind = DecoderStep::Kind::ByteLevel;
    } else if (type == "Replace") {
        step.kind = DecoderStep::Kind::Replace;
        step.from = literal_pattern(d, "decoder Replace", path);
        step.to = d.at("content").get<std::string>();
    } else if (type == "ByteFallback") {
        step.kind = DecoderStep::Kind::ByteFallback;
    } else if (type == "Fuse") {
        step.kind = DecoderStep::Kind::Fuse;
    } else if (type == "Strip") {
        step.kind = DecoderStep::Kind::Strip;
        step.from = one_character(d.at("content"), "decoder Strip content", path);
        step.start = d.value("start", size_t{0});
        step.stop = d.value("stop", size_t{0});
    } else if (type == "Metaspace") {
        step.kind = DecoderStep::Kind::Metaspace;
        step.from = one_character(d.value("replacement", json("\xe2\x96\x81")),
                                  "decoder Metaspace replacement", path);
        step.strip_first = d.contains("prepend_scheme")
                               ? d.at("prepend_scheme").get<std::string>() != "never"
                               : d.value("add_prefix_space", true);
    } else {
        fail(
            "{}: decoder type '{}' is not supported (supported: ByteLevel, Replace, "
            "ByteFallback, Fuse, Strip, Metaspace, Sequence)",
            path, type);
    }
    im.decoders.push_back(std::move(step));
}

std::optional<std::string> special_content(const json& j, const char* key) {
    if (!j.is_object() || !j.contains(key) || j[key].is_null()) return std::nullopt;
    if (j[key].is_string()) return j[key].get<std::string>();
    if (j[key].is_object() && j[key].contains("content") && j[key]["content"].is_string())
        return j[key]["content"].get<std::string>();
    return std::nullopt;
}

// What llama.cpp's converter (gguf-py SpecialVocab) infers from the post-processor: a
// template whose single sequence starts with the BOS (or CLS) token adds BOS; one starting
// with another special token does not; RobertaProcessing adds it.
std::optional<bool> template_adds_bos(const json& post, const std::optional<std::string>& bos,
                                      const std::optional<std::string>& cls,
                                      const std::string& path) try {
    if (!post.is_object()) return std::nullopt;
    std::optional<bool> result;
    const json procs = post.contains("processors") ? post["processors"] : json::array({post});
    for (const json& p : procs) {
        const std::string type = p.value("type", "");
        if (type == "RobertaProcessing") {
            result = true;
        } else if (type == "TemplateProcessing" && p.contains("single") && p["single"].is_array() &&
                   p["single"].size() > 1) {
            const json& first = p["single"][0];
            if (first.contains("SpecialToken") && first["SpecialToken"].contains("id")) {
                const std::string id = first["SpecialToken"]["id"].get<std::string>();
                result = (bos && id == *bos) || (cls && id == *cls) || (!bos && !cls);
            }
        }
    }
    return result;
} catch (const json::exception& e) {
    fail("{}: unexpected post_processor structure: {}", path, e.what());
}

bool has_split_regex(const json& pt, const std::string& regex) {
    if (!pt.is_object()) return false;
    if (pt.contains("pretokenizers"))
        for (const json& p : pt["pretokenizers"])
            if (has_split_regex(p, regex)) return true;
    return pt.contains("pattern") && pt["pattern"].is_object() && pt["pattern"].contains("Regex") &&
           pt["pattern"]["Regex"] == regex;
}

}  // namespace

Tokenizer Tokenizer::from_hf_json(const std::string& path) {
    namespace fs = std::filesystem;
    QL_CHECK(fs::exists(path), "missing tokenizer: {} does not exist", path);
    const json doc = parse_json_file(path);
    auto im = std::make_unique<Impl>();
    im->source = path;
    im->kind = ModelKind::CharBpe;  // a ByteLevel pre-tokenizer switches to ByteLevelBpe
    try {
        QL_CHECK(doc.contains("model"), "{}: no 'model' object", path);
        const json& model = doc.at("model");
        const std::string type = model.value("type", "BPE");
        QL_CHECK(type == "BPE",
                 "{}: tokenizer model type '{}' is not supported (expected BPE; model.type)", path,
                 type);
        auto absent = [&](const char* key) {
            return !model.contains(key) || model[key].is_null() ||
                   (model[key].is_string() && model[key].get<std::string>().empty());
        };
        for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
            QL_CHECK(absent(key), "{}: model.{} = {} is not supported", path, key,
                     model[key].dump());
        QL_CHECK(absent("dropout") || (model["dropout"].is_number() && model["dropout"] == 0),
                 "{}: model.dropout = {} is not supported (BPE dropout is random)", path,
                 model["dropout"].dump());
        im->byte_fallback = model.value("byte_fallback", false);
        im->fuse_unk = model.value("fuse_unk", false);
        im->ignore_merges = model.value("ignore_merges", false);
        // A token id must be an integer that fits: converting 1e40 to int32 is undefined.
        auto token_id = [&](const json& id, const std::string& text) {
            QL_CHECK(id.is_number_integer() && id.get<int64_t>() >= 0 &&
                         id.get<int64_t>() < (int64_t{1} << 24),
                     "{}: token '{}' has id {}, expected an integer in [0, 2^24)", path, text,
                     id.dump());
            return static_cast<int32_t>(id.get<int64_t>());
        };
        for (const auto& [text, id] : model.at("vocab").items())
            im->add_token(token_id(id, text), text);
        for (const json& a : doc.value("added_tokens", json::array())) {
            const int32_t id = token_id(a.at("id"), a.value("content", std::string("?")));
            const std::string content = a.at("content").get<std::string>();
            QL_CHECK(!a.value("single_word", false),
                     "{}: added token '{}' has single_word true, which is not supported", path,
                     content);
            im->add_token(id, content);
            im->added.push_back({content,
                                 id,
                                 a.value("special", false),
                                 a.value("normalized", !a.value("special", false)),
                                 a.value("lstrip", false),
                                 a.value("rstrip", false),
                                 {}});
        }
        if (!absent("unk_token")) {
            const std::string u = model.at("unk_token").get<std::string>();
            im->unk = im->lookup(u);
            QL_CHECK(im->unk >= 0, "{}: model.unk_token '{}' is not in the vocabulary", path, u);
        }
        int32_t rank = 0;
        for (const json& m : model.at("merges")) {
            if (m.is_array()) {
                im->add_merge(m.at(0).get<std::string>(), m.at(1).get<std::string>(), rank++);
            } else {
                const std::string s = m.get<std::string>();
                const size_t sp = s.find(' ', 1);
                QL_CHECK(sp != std::string::npos, "{}: merge {} '{}' has no space", path, rank, s);
                im->add_merge(s.substr(0, sp), s.substr(sp + 1), rank++);
            }
        }
        add_normalizer(*im, doc.value("normalizer", json()), path);
        add_pretokenizer(*im, doc.value("pre_tokenizer", json()), path, false);
        add_decoder(*im, doc.value("decoder", json()), path);
        QL_CHECK(!(im->kind == ModelKind::ByteLevelBpe && im->byte_fallback),
                 "{}: byte_fallback together with a ByteLevel pre_tokenizer is not supported",
                 path);
    } catch (const json::exception& e) {
        fail("{}: unexpected tokenizer.json structure: {}", path, e.what());
    }
    // BOS/EOS: tokenizer_config.json names them; config.json gives ids as a fallback.
    const fs::path dir = fs::path(path).parent_path();
    json cfg;
    if (fs::exists(dir / "tokenizer_config.json"))
        cfg = parse_json_file((dir / "tokenizer_config.json").string());
    const auto bos_text = special_content(cfg, "bos_token");
    if (bos_text) im->bos = im->lookup(*bos_text);
    if (auto eos = special_content(cfg, "eos_token")) im->eos = im->lookup(*eos);
    if ((im->bos < 0 || im->eos < 0) && fs::exists(dir / "config.json")) {
        const json c = parse_json_file((dir / "config.json").string());
        auto small_id = [&](const char* key) {
            return c.contains(key) && c[key].is_number_integer() && c[key].get<int64_t>() >= 0 &&
                   c[key].get<int64_t>() < static_cast<int64_t>(im->tokens.size());
        };
        if (im->bos < 0 && small_id("bos_token_id"))
            im->bos = static_cast<int32_t>(c["bos_token_id"].get<int64_t>());
        if (im->eos < 0 && small_id("eos_token_id"))
            im->eos = static_cast<int32_t>(c["eos_token_id"].get<int64_t>());
    }
    // add_bos as llama.cpp ends up with after conversion: tokenizer_config.json's
    // add_bos_token, else what the post-processor implies, else llama.cpp's default for the
    // vocabulary written (SentencePiece-style "llama": true; byte-level: true only for the
    // Llama-3 pre-tokenizer).
    if (cfg.is_object() && cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean()) {
        im->add_bos = cfg["add_bos_token"].get<bool>();
    } else if (auto t = template_adds_bos(doc.value("post_processor", json()), bos_text,
                                          special_content(cfg, "cls_token"), path)) {
        im->add_bos = *t;
    } else if (im->kind == ModelKind::ByteLevelBpe) {
        im->add_bos = has_split_regex(doc.value("pre_tokenizer", json()), kLlama3PretokenizerRegex);
    } else {
        im->add_bos = true;
    }
    for (size_t i = 0; i < im->tokens.size(); ++i)
        QL_CHECK(!im->tokens[i].empty(), "{}: token id {} is missing from the vocabulary", path, i);
    im->finish();
    return Tokenizer(std::move(im));
}

}  // namespace quantlens
